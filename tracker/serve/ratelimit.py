"""Token-bucket rate limits per client, in process (pure: no I/O, the clock is injected).

The privacy endpoints (erasure, self-access) are rare and expensive to abuse
(each erasure is a Kafka write; self-access is a profile read a scraper could
try to enumerate), so each client address gets ``burst`` requests at once and
then ``rate_per_second``. Limits are per API replica: with N replicas a client
gets up to N times the rate, which is fine for abuse protection; a global
limit belongs in the load balancer or API gateway. Memory is bounded: the
least recently seen clients are forgotten beyond ``max_clients``.

>>> now = [0.0]
>>> limiter = RateLimiter(rate_per_second=1.0, burst=2, clock=lambda: now[0])
>>> [limiter.acquire("10.0.0.1") for _ in range(3)]
[0.0, 0.0, 1.0]
>>> now[0] = 1.0
>>> limiter.acquire("10.0.0.1"), limiter.acquire("10.0.0.2")
(0.0, 0.0)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable


class RateLimiter:
    """One token bucket per key, refilled continuously."""

    def __init__(
        self,
        *,
        rate_per_second: float,
        burst: int,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError(f"need rate_per_second > 0 and burst >= 1, not {rate_per_second}, {burst}")
        self.rate_per_second = rate_per_second
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        # key -> (tokens, time they were counted at); most recently used last.
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def acquire(self, key: Hashable) -> float:
        """Take one token for ``key``: 0.0 if allowed, else the seconds until a token is due."""
        now = self._clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_second)
        if tokens >= 1.0:
            self._remember(key, tokens - 1.0, now)
            return 0.0
        self._remember(key, tokens, now)
        return (1.0 - tokens) / self.rate_per_second

    def _remember(self, key: Hashable, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
