"""Prometheus metrics of the collector, on a registry owned by one app.

Each :func:`~tracker.collect.app.create_app` gets its own :class:`CollectorRegistry`,
so building many apps (tests do) never registers a metric twice. Labels carry
endpoints, outcomes and reason codes only, never a visitor or site id.
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
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
BODY_BYTES_BUCKETS = (256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576)
# ``reason`` of accepted events and successful requests, so that outcomes share one label set.
OK_REASON = "none"


class CollectorMetrics:
    """The collector's metrics, registered on ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.events = Counter(
            "tracker_collector_events_total",
            "Events received in well-formed batches, by outcome (accepted, rejected, dropped) and "
            "reason, counted once Kafka acknowledged them (dropped: when answered).",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.requests = Counter(
            "tracker_collector_requests_total",
            "Requests by endpoint (events, pixel), HTTP status and error code (none when accepted).",
            ["endpoint", "status", "reason"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "tracker_collector_request_duration_seconds",
            "Time from reading a request's first bytes to its answer (body read and waits for the "
            "event loop included), by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_events = Histogram(
            "tracker_collector_batch_events",
            "Events per well-formed batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.body_bytes = Histogram(
            "tracker_collector_request_body_bytes",
            "Size of the request bodies read in full.",
            buckets=BODY_BYTES_BUCKETS,
            registry=self.registry,
        )
        self.produce_duration = Histogram(
            "tracker_collector_produce_duration_seconds",
            "Time from handing a batch to the Kafka producer to its last acknowledgement (or failure).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.kafka_errors = Counter(
            "tracker_collector_kafka_errors_total",
            "Batches Kafka did not acknowledge, by kind (unavailable, timeout, refused).",
            ["kind"],
            registry=self.registry,
        )
        self.producer_ready = Gauge(
            "tracker_collector_producer_ready",
            "1 while the Kafka producer is connected, else 0.",
            registry=self.registry,
        )
        self.inflight_bytes = Gauge(
            "tracker_collector_inflight_bytes",
            "Bytes handed to Kafka and not yet acknowledged (bounded by TRACKER_MAX_INFLIGHT_BYTES).",
            registry=self.registry,
        )
        self.inflight_records = Gauge(
            "tracker_collector_inflight_records",
            "Records handed to Kafka and not yet acknowledged (bounded by TRACKER_MAX_INFLIGHT_EVENTS).",
            registry=self.registry,
        )
        self.requests_in_progress = Gauge(
            "tracker_collector_requests_in_progress",
            "Requests being handled now (bounded by TRACKER_MAX_CONCURRENT_REQUESTS).",
            registry=self.registry,
        )
        self.rate_limit_keys = Gauge(
            "tracker_collector_rate_limit_clients",
            "Token buckets held by the rate limiter (client network and site pairs seen lately).",
            registry=self.registry,
        )

    def track(
        self,
        *,
        producer_ready: Callable[[], bool],
        inflight: Callable[[], tuple[int, int]],
        rate_limit_keys: Callable[[], int],
        requests_in_progress: Callable[[], int],
    ) -> None:
        """Read these states at scrape time."""
        self.producer_ready.set_function(lambda: float(producer_ready()))
        self.inflight_bytes.set_function(lambda: float(inflight()[0]))
        self.inflight_records.set_function(lambda: float(inflight()[1]))
        self.rate_limit_keys.set_function(lambda: float(rate_limit_keys()))
        self.requests_in_progress.set_function(lambda: float(requests_in_progress()))

    def count_request(self, endpoint: str, status: int, reason: str, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status), reason=reason).inc()
        self.request_duration.labels(endpoint=endpoint).observe(seconds)

    def count_events(self, accepted: int, rejected_reasons: list[str]) -> None:
        if accepted:
            self.events.labels(outcome="accepted", reason=OK_REASON).inc(accepted)
        for reason in rejected_reasons:
            self.events.labels(outcome="rejected", reason=reason).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
