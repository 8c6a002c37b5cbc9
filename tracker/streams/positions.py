"""Where processing of each input partition stands, kept in the ``visitors`` table itself.

Why the worker does not trust Kafka's committed offsets alone: around a rebalance
Faust's consumer can drop a run of records it had already fetched (its streams
skip records of an older consumer generation or fetched while flow was paused,
and its offset-gap filling then commits past them; see faust-streaming issues
#216 and #221). Seen here as 1-5 of 40 visitors each missing one event after
two rebalances.

So, like Kafka Streams keeping offsets with its state, every batch also writes,
per input partition, the next offset to process: to the same changelog partition
as the states that batch changed, after them. Restored with the table, it says
exactly which records the table holds. Records then fall in three cases
(:func:`classify`):

- ``next``: the one expected (or the first ever seen on that partition): processed;
- ``behind``: already in the table (a redelivery): folded again, which skips
  events by offset and rewrites their profiles to Redis (idempotent);
- ``ahead``: records before it were never processed. The worker seeks the
  partition back to the expected offset and ignores later records until the
  missing one arrives (:class:`Rewinds` throttles the seeks).

A skipped record that no later record follows is never seen "ahead": so a
partition whose high watermark stays past its stored position while that
position does not move for ``STALL_SECONDS`` is sought back too
(:class:`StallWatch`).

Offsets of the input topics are contiguous: the collector's and the worker's own
producers are idempotent and not transactional, and the topics are not
compacted. Records deleted by retention before they were processed are the one
real gap; the worker finds them with the partition's earliest offset, counts
them as lost and moves on.

Pure logic: no Kafka, no Faust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

POSITION_KEY_MARK = b"\x00position\x00"
POSITION_VALUE_MARK = b"\x00P"
# A seek-back not followed by the missing record within this time is issued again
# (records fetched before the seek may still be arriving, or a rebalance reset the position).
RESEEK_SECONDS = 2.0
# After this many seeks without the record arriving, the gap is accepted and counted as lost
# (reachable only if offsets are not contiguous: a transactional producer writing the input).
MAX_SEEKS = 15

# A partition with records past its position and no progress for this long is sought back.
STALL_SECONDS = 5.0

Verdict = Literal["next", "behind", "ahead"]
TopicPartition = tuple[str, int]


def position_key(topic: str, partition: int) -> bytes:
    """Table key of an input partition's position (no ``site:visitor`` key can look like it)."""
    return POSITION_KEY_MARK + f"{topic}\x00{partition}".encode()


def is_position_key(key: object) -> bool:
    return isinstance(key, bytes) and key.startswith(POSITION_KEY_MARK)


@dataclass(frozen=True, slots=True)
class InputPosition:
    """The next offset of an input partition that the table does not hold yet."""

    next_offset: int

    def to_bytes(self) -> bytes:
        return POSITION_VALUE_MARK + str(self.next_offset).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> InputPosition:
        if not raw.startswith(POSITION_VALUE_MARK):
            raise ValueError("not an input position value")
        return cls(int(raw[len(POSITION_VALUE_MARK) :]))


def is_position_value(raw: bytes) -> bool:
    return raw.startswith(POSITION_VALUE_MARK)


def classify(expected: int | None, offset: int) -> Verdict:
    """What to do with the record at ``offset`` when the table holds everything below ``expected``.

    >>> classify(None, 41), classify(41, 41), classify(41, 7), classify(41, 44)
    ('next', 'next', 'behind', 'ahead')
    """
    if expected is None or offset == expected:
        return "next"
    return "behind" if offset < expected else "ahead"


@dataclass
class _Seek:
    target: int
    at: float
    count: int = 1


@dataclass
class Rewinds:
    """The seek-backs under way, one per partition, so that a run of records that all arrive
    ahead of the missing one asks for one seek, not one per record."""

    reseek_seconds: float = RESEEK_SECONDS
    max_seeks: int = MAX_SEEKS
    _seeks: dict[TopicPartition, _Seek] = field(default_factory=dict)

    def should_seek(self, tp: TopicPartition, target: int, now: float) -> bool:
        """True when ``tp`` must be sought back to ``target`` now (and remember that it was)."""
        seek = self._seeks.get(tp)
        if seek is None or seek.target != target:
            self._seeks[tp] = _Seek(target, now)
            return True
        if now - seek.at < self.reseek_seconds:
            return False
        seek.at, seek.count = now, seek.count + 1
        return True

    def exhausted(self, tp: TopicPartition, target: int) -> bool:
        """The missing record did not come after ``max_seeks`` seeks: it does not exist."""
        seek = self._seeks.get(tp)
        return seek is not None and seek.target == target and seek.count >= self.max_seeks

    def due(self, now: float) -> list[tuple[TopicPartition, int]]:
        """The seeks to issue again now: no record came to resolve them (the partition is idle,
        or the records it re-fetched were dropped); each is remembered as issued."""
        due = []
        for tp, seek in self._seeks.items():
            if now - seek.at >= self.reseek_seconds and seek.count < self.max_seeks:
                seek.at, seek.count = now, seek.count + 1
                due.append((tp, seek.target))
        return due

    def target(self, tp: TopicPartition) -> int | None:
        """The offset ``tp`` is being sought back to, if it is."""
        seek = self._seeks.get(tp)
        return seek.target if seek is not None else None

    def arrived(self, tp: TopicPartition) -> None:
        """The expected record of ``tp`` was processed: nothing to rewind any more."""
        self._seeks.pop(tp, None)

    def pending(self) -> int:
        return len(self._seeks)


@dataclass
class StallWatch:
    """Partitions whose stored position stopped short of their high watermark."""

    stall_seconds: float = STALL_SECONDS
    _since: dict[TopicPartition, tuple[int, float]] = field(default_factory=dict)

    def stalled(self, tp: TopicPartition, position: int | None, highwater: int | None, now: float) -> bool:
        """True when ``tp`` holds records past ``position`` and ``position`` has not moved for
        ``stall_seconds`` (a busy worker moves it every batch)."""
        if position is None or highwater is None or highwater <= position:
            self._since.pop(tp, None)
            return False
        since = self._since.get(tp)
        if since is None or since[0] != position:
            self._since[tp] = (position, now)
            return False
        return now - since[1] >= self.stall_seconds
