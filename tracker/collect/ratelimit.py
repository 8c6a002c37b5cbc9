"""Per-client rate limiting: one token bucket per key, in process memory.

Pure logic (the clock is injectable). The collector keys buckets by
``(truncated client network, site)``. Why in process and not in Redis: the collector
depends on Kafka alone, and a Redis round trip on every request would add latency and
a second way to fail on the hottest path. The price: behind N replicas a client gets
up to N times the configured rate (less with a load balancer that hashes client
addresses to replicas). That bounds abuse, which is the point; it is not a quota.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class TokenBucketLimiter:
    """``rate`` tokens per second, at most ``burst`` saved up, per key.

    Memory is bounded: past ``max_keys`` the least recently used bucket is forgotten,
    which only resets it to full (a client seen that rarely is within its rate anyway).

    >>> now = [0.0]
    >>> limiter = TokenBucketLimiter(rate=1.0, burst=2, clock=lambda: now[0])
    >>> [limiter.take("client") for _ in range(3)]
    [0.0, 0.0, 1.0]
    >>> now[0] = 1.0
    >>> limiter.take("client")
    0.0
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate} burst={burst}")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        # key -> (tokens, time of last update); dict order is recency order.
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def take(self, key: Hashable, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens: 0.0 if allowed, else the seconds until it would be."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]
        return wait

    def __len__(self) -> int:
        return len(self._buckets)
