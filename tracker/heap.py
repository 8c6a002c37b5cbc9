"""Garbage-collector settings for a long-running service process.

CPython's cyclic collector pauses the event loop while it scans. Two things make those
pauses long and frequent in a request-serving process: start-up objects (frameworks,
schemas, parser tables: ~80,000 in the collector) are scanned again by every full
collection, and the default young-generation threshold (700 allocations) runs a young
collection several times per request, promoting the objects of requests still in flight
to the old generations, which in turn triggers full collections. Measured on the
collector at 15,000-20,000 events/s (docs/BENCHMARKS.md): about 40 full collections in a
45-second run, 27-41 ms each, the whole p99 tail.

:func:`settle_heap` freezes what start-up built and raises the young threshold, so a
young collection sees a few requests' worth of short-lived objects and nearly nothing
survives into the old generations. Reference cycles are still collected.

The stream worker has the same problem in another shape: its table holds a state per
visitor (tens of objects each), and every full collection rescans them all; with the
default thresholds, 11-12 full collections took ~2 s of an 18-second run of
``bench/streams_throughput.py`` (0.1-0.2 s once settled).
"""

from __future__ import annotations

import gc

# Container allocations between young collections (CPython's default: 700). At ~200
# allocations per event, one young collection every few requests.
YOUNG_THRESHOLD = 50_000


def settle_heap(*, young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Collect once, move every surviving object out of the collector's reach, raise the
    young-generation threshold. Call it once start-up is done, in a process that runs one service."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
