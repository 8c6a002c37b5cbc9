"""Prometheus metrics of the collector, on a registry owned by one app.

Each :func:`~tracker.collect.app.create_app` gets its own :class:`CollectorRegistry`,
so building many apps (tests do) never registers a metric twice. Labels carry
outcomes and reason codes only, never a visitor or site id.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

# Requests are mostly a Kafka round trip: resolve the millisecond range finely.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# ``reason`` of accepted events, so that both outcomes share one label set.
ACCEPTED_REASON = "none"


class CollectorMetrics:
    """The collector's metrics, registered on ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.events = Counter(
            "tracker_collector_events_total",
            "Events received in well-formed batches, by outcome and rejection reason, "
            "counted once Kafka acknowledged them.",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.requests = Counter(
            "tracker_collector_requests_total",
            "Requests to POST /v1/events, by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "tracker_collector_request_duration_seconds",
            "Time to answer POST /v1/events, body read included.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.produce_duration = Histogram(
            "tracker_collector_produce_duration_seconds",
            "Time from handing a batch to the Kafka producer to its last acknowledgement (or failure).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.producer_ready = Gauge(
            "tracker_collector_producer_ready",
            "1 while the Kafka producer is connected, else 0.",
            registry=self.registry,
        )

    def track_producer(self, is_ready: Callable[[], bool]) -> None:
        """Read the producer's state at scrape time."""
        self.producer_ready.set_function(lambda: float(is_ready()))

    def count_events(self, accepted: int, rejected_reasons: list[str]) -> None:
        if accepted:
            self.events.labels(outcome="accepted", reason=ACCEPTED_REASON).inc(accepted)
        for reason in rejected_reasons:
            self.events.labels(outcome="rejected", reason=reason).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
