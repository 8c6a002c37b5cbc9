"""Keep Faust from dropping the records that a rewind re-fetches.

Faust's fetch loop remembers, per partition, the offset of the last record it
delivered, and drops any fetched record below it: meant for records fetched
again after a seek while an older fetch result was still being delivered. When
the worker seeks a partition back (:mod:`tracker.streams.positions`), that rule
drops the very records it seeks back for whenever records of an older fetch are
still being delivered after the seek. So while a rewind is under way, the
remembered offset of its partition is held at the rewind's target.

This leans on one attribute of Faust's consumer (``_read_offset``); the
recovery tests (``tests/test_streams_recovery.py``) fail if a Faust upgrade
changes it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

Hold = Callable[[Any], "int | None"]


class HeldReadOffsets(defaultdict):
    """Faust's read-offset map, with the partitions being rewound held at their target."""

    def __init__(self, hold: Hold, initial: dict[Any, int | None]) -> None:
        super().__init__(lambda: None, initial)
        self._hold = hold

    def __setitem__(self, tp: Any, offset: int | None) -> None:
        target = self._hold(tp)
        if target is not None and offset is not None and offset > target:
            offset = target
        super().__setitem__(tp, offset)


def install(consumer: Any, hold: Hold) -> None:
    """Give ``consumer`` a held read-offset map. Call before the worker starts: Faust's fetch
    loop keeps the bound methods of the map it finds when it starts."""
    current = consumer._read_offset
    if not isinstance(current, HeldReadOffsets):
        consumer._read_offset = HeldReadOffsets(hold, dict(current))
