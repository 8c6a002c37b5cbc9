"""The sticky holdout group: visitors who always get the non-personalised default, to measure lift.

Membership is a pure function of ``salt:site:visitor``: no state to store, the
same answer on every API replica and every request, and a visitor stays in
(or out of) the group for as long as the salt is unchanged. Changing the salt
draws a new group (do it between experiments, never during one).

The hash is BLAKE2b (stable across processes and Python versions, unlike
``hash()``); its first 8 bytes as an integer, modulo 1,000,000, give a bucket
compared with ``percent * 10,000``, so percentages down to 0.0001 % are exact.

>>> in_holdout("shop", "visitor-0001", percent=5.0, salt="v1")
False
>>> sum(in_holdout("shop", f"visitor-{i:05d}", percent=5.0, salt="v1") for i in range(20_000))
975
"""

from __future__ import annotations

import hashlib

BUCKETS = 1_000_000


def holdout_bucket(site_id: str, visitor_id: str, *, salt: str) -> int:
    """The visitor's stable bucket in ``[0, BUCKETS)``."""
    digest = hashlib.blake2b(f"{salt}:{site_id}:{visitor_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def in_holdout(site_id: str, visitor_id: str, *, percent: float, salt: str) -> bool:
    """Whether the visitor is in the holdout group (``percent`` of visitors, 0..100)."""
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"holdout percent {percent} must be between 0 and 100")
    return holdout_bucket(site_id, visitor_id, salt=salt) < percent * (BUCKETS / 100.0)
