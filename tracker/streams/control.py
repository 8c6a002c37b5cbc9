"""Records on the worker's internal control topic (``<app id>-visitor-control``).

Faust lets a table be changed only while processing a record of a topic
partitioned like the table, so anything that must change a visitor's state
and does not come from ``events`` is first written here, keyed and
partitioned like that visitor's events, and applied by the same agent, in
order with the visitor's events:

- ``idle``: the sweep found the visitor's open session idle (close and emit it);
- ``expire``: nothing happened for the retention period (drop the entry);
- ``erase``: an erasure request, re-keyed from the ``erasures`` topic;
- ``rewards``: some of the visitor's offer decisions are due (their attribution
  window closed by ``at``): finish them and emit their rewards.

Internal to the worker (plain JSON with a version ``v``); not an interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiokafka.partitioner import murmur2

from tracker.schema import ErasureRequest

CONTROL_VERSION = 1
Kind = Literal["idle", "expire", "erase", "rewards"]


@dataclass(frozen=True, slots=True)
class Control:
    kind: Kind
    session_id: str | None = None
    events: int = 0
    erasure: ErasureRequest | None = None
    at: int = 0  # rewards: the sweep's clock (ms) the due decisions are finished at

    def to_bytes(self) -> bytes:
        data: dict[str, Any] = {"v": CONTROL_VERSION, "k": self.kind}
        if self.kind == "idle":
            data |= {"sid": self.session_id, "n": self.events}
        elif self.kind == "erase" and self.erasure is not None:
            data["req"] = self.erasure.model_dump(mode="json")
        elif self.kind == "rewards":
            data["at"] = self.at
        return orjson.dumps(data)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Control:
        data = orjson.loads(raw)
        if data.get("v") != CONTROL_VERSION:
            raise ValueError(f"control record version {data.get('v')!r} is not {CONTROL_VERSION}")
        kind = data["k"]
        if kind == "idle":
            return cls("idle", session_id=data["sid"], events=int(data["n"]))
        if kind == "erase":
            return cls("erase", erasure=ErasureRequest.model_validate(data["req"]))
        if kind == "expire":
            return cls("expire")
        if kind == "rewards":
            return cls("rewards", at=int(data["at"]))
        raise ValueError(f"unknown control record kind {kind!r}")


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the collector's producer uses)
    puts ``key`` in, out of ``partitions``.

    >>> key_partition(b"shop:visitor-01", 4) in range(4)
    True
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions
