"""The bounded in-flight produce buffer: bytes and records handed to Kafka, not yet acknowledged.

When Kafka slows down or stops, requests wait for acknowledgements up to the produce
timeout; without a bound, the waiting batches would pile up in memory. Past either
bound the collector answers 503 with ``Retry-After`` at once: the sender keeps the
batch, which is where it is safest.
"""

from __future__ import annotations


class RequestSlots:
    """A bound on requests in progress (single event loop: no lock).

    >>> slots = RequestSlots(1)
    >>> slots.try_enter(), slots.try_enter()
    (True, False)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


class InflightBuffer:
    """Admission control over what is in flight. Single-threaded (one event loop): no lock.

    A batch is admitted while both totals stay within their bounds, and always when
    nothing else is in flight, so that a batch bigger than the bound alone still goes.

    >>> buffer = InflightBuffer(max_bytes=100, max_records=10)
    >>> buffer.try_acquire(80, 2), buffer.try_acquire(30, 1)
    (True, False)
    >>> buffer.release(80, 2); buffer.try_acquire(30, 1)
    True
    """

    def __init__(self, *, max_bytes: int, max_records: int) -> None:
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.bytes = 0
        self.records = 0

    def try_acquire(self, nbytes: int, nrecords: int) -> bool:
        empty = self.records == 0
        if not empty and (self.bytes + nbytes > self.max_bytes or self.records + nrecords > self.max_records):
            return False
        self.bytes += nbytes
        self.records += nrecords
        return True

    def release(self, nbytes: int, nrecords: int) -> None:
        self.bytes -= nbytes
        self.records -= nrecords
