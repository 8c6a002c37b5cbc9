"""Prometheus metrics of the stream worker (base units, no visitor ids in labels)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_PROCESSED = Counter(
    "tracker_worker_events_total",
    "Events read from the events topic, by type and outcome (applied, duplicate, invalid).",
    ["type", "outcome"],
)
PROCESSING_LAG = Histogram(
    "tracker_worker_event_to_profile_seconds",
    "Time from the collector receiving an event to its profile write.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
