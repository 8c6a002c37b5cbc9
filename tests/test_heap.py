"""The garbage-collector settings every service process applies once started."""

from __future__ import annotations

import gc

from tracker.heap import YOUNG_THRESHOLD, settle_heap


def test_settle_heap_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    start_up_object: list[list[str]] = [["built at start-up"]]  # a container the GC tracks
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(start_up_object)
        # Frozen: in the permanent generation, which no collection scans.
        assert all(obj is not start_up_object for obj in gc.get_objects())
        young, middle, old = gc.get_threshold()
        assert young == YOUNG_THRESHOLD > before[0]
        assert (middle, old) == before[1:]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
