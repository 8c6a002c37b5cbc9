"""Prometheus metrics of the offer API.

Each app owns its registry instead of using the process-wide default, so that
tests (and anything else) can build many apps in one process without
"Duplicated timeseries" errors. Run one app per process and scale with
replicas; multi-process workers would need prometheus-client's multiprocess
mode. Labels never carry visitor or site ids.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

Outcome = Literal["personalised", "default", "fallback", "empty"]
OUTCOMES: tuple[Outcome, ...] = ("personalised", "default", "fallback", "empty")
DROP_REASONS = ("queue_full", "kafka_error", "shutdown")

# The API aims at single-digit milliseconds; the top buckets catch Redis timeouts.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class OfferMetrics:
    """The counters and histograms one offer API app reports at ``/metrics``."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_collectors: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if process_collectors:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.requests = Counter(
            "tracker_offer_requests",
            "Offer requests answered, by outcome (fallback = Redis unavailable, empty = no offer for slot).",
            ["outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "tracker_offer_request_duration_seconds",
            "Time to answer an offer request, from handler entry to response built.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions_sent = Counter(
            "tracker_offer_decisions_sent",
            "Decision records acknowledged by Kafka.",
            registry=self.registry,
        )
        self.decisions_dropped = Counter(
            "tracker_offer_decisions_dropped",
            "Decision records not written to Kafka (the response was still served).",
            ["reason"],
            registry=self.registry,
        )
        # Export every series from the start so that rate() and alerts see zeros, not gaps.
        for outcome in OUTCOMES:
            self.requests.labels(outcome=outcome)
        for reason in DROP_REASONS:
            self.decisions_dropped.labels(reason=reason)
