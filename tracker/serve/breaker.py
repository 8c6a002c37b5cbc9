"""A circuit breaker for the offer API's Redis reads (pure: no I/O, the clock is injected).

Why: with Redis down, every request would otherwise wait for a connect or read
timeout (``TRACKER_REDIS_TIMEOUT_SECONDS``) before serving the default. After
``failure_threshold`` consecutive failures the breaker *opens*: requests skip
Redis entirely and get the default at once, so a dead Redis costs about
nothing per request. After ``reset_seconds`` it is *half-open*: exactly one
request (the probe) may try Redis while the others keep skipping it; the
probe's success closes the breaker, its failure opens it for another
``reset_seconds``. A probe whose outcome is never reported (a cancelled
request) is considered lost after ``reset_seconds``, so the breaker cannot
stay half-open forever.

>>> now = [0.0]
>>> breaker = CircuitBreaker(failure_threshold=2, reset_seconds=1.0, clock=lambda: now[0])
>>> breaker.allow(); breaker.failure(); breaker.allow(); breaker.failure()
True
True
>>> breaker.state, breaker.allow()
('open', False)
>>> now[0] = 1.5
>>> breaker.allow(), breaker.state, breaker.allow()  # one probe only
(True, 'half_open', False)
>>> breaker.success(); breaker.state
'closed'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "half_open", "open"]
# Gauge values for Prometheus: 0 healthy, 2 cut off.
STATE_VALUES: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    """Counts consecutive failures of a dependency and decides whether to call it."""

    def __init__(
        self,
        *,
        failure_threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[State], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {failure_threshold}")
        if reset_seconds <= 0:
            raise ValueError(f"reset_seconds must be positive, not {reset_seconds}")
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._on_change = on_change
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started_at: float | None = None

    @property
    def state(self) -> State:
        return self._state

    def allow(self) -> bool:
        """Whether the caller may call the dependency now; report the outcome with
        :meth:`success` or :meth:`failure` when it does."""
        if self._state == "closed":
            return True
        now = self._clock()
        if self._state == "open":
            if now - self._opened_at < self.reset_seconds:
                return False
            self._set("half_open")
            self._probe_started_at = now
            return True
        # Half-open: a probe is out. Let another one through only if it was lost.
        if self._probe_started_at is not None and now - self._probe_started_at < self.reset_seconds:
            return False
        self._probe_started_at = now
        return True

    def success(self) -> None:
        self._failures = 0
        self._probe_started_at = None
        if self._state != "closed":
            self._set("closed")

    def failure(self) -> None:
        self._failures += 1
        if self._state == "half_open" or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._probe_started_at = None
            if self._state != "open":
                self._set("open")

    def _set(self, state: State) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(state)
