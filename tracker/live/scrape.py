"""Read a service's Prometheus ``/metrics`` into a plain snapshot.

A snapshot maps each *sample* name (``tracker_offer_requests_total``,
``tracker_worker_event_to_profile_seconds_bucket``...) to its series as
``(labels, value)`` pairs. Sample names, not family names, because that is what
the exposition shows and what a reader greps for; the parser strips ``_total``
from counter families, which would otherwise hide it.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Labels = dict[str, str]
Snapshot = dict[str, list[tuple[Labels, float]]]

# The samples a family of each type exposes once it has series. A labelled metric
# with no series yet is listed with no samples at all: recording its names anyway
# lets the figures tell "no events yet" (count from zero) from "service not answering".
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def parse(text: str) -> Snapshot:
    """The snapshot of one exposition text (format 0.0.4, as ``generate_latest`` writes)."""
    snapshot: Snapshot = {}
    for family in text_string_to_metric_families(text):
        for suffix in _SUFFIXES.get(family.type, ()):
            snapshot.setdefault(family.name + suffix, [])
        for sample in family.samples:
            snapshot.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return snapshot


def scrape(url: str, client: httpx.Client | None = None, *, timeout: float = 1.0) -> Snapshot:
    """The snapshot at ``url``; empty when the service does not answer or answers garbage.

    Never raises: the live view must keep drawing while a service restarts.
    """
    try:
        response = (client or httpx).get(url, timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError:
        return {}
    try:
        return parse(response.text)
    except Exception:  # a malformed exposition (the parser raises several kinds): show "-", go on
        return {}


def merge(*snapshots: Snapshot) -> Snapshot:
    """One snapshot of several services (their ``tracker_*`` names do not overlap)."""
    merged: Snapshot = {}
    for snapshot in snapshots:
        for name, series in snapshot.items():
            merged.setdefault(name, []).extend(series)
    return merged
