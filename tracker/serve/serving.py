"""Frequency caps: count each offer served in the visitor's serving state, in the background.

The request path reads the visitor's counters with their profile (one round
trip, :class:`~tracker.serve.store.VisitorStore`) and never waits for the
write: :meth:`ImpressionRecorder.record` only puts the served offer in a
bounded in-memory queue. A few background tasks drain it; each folds the offer
into the counters (:meth:`ImpressionCounts.record`, idempotent by decision id)
and replaces the hash ``trk:v1:serving:{site:visitor}`` as a whole, with the
retention TTL (``TRACKER_PROFILE_RETENTION_SECONDS``).

Two requests of one visitor (two slots of one page) read the same counters,
so the write is a compare-and-set: the hash carries a revision (``rev``, the
decision id of its last write) and a small Lua script replaces it only if the
revision is still the one that was read; otherwise it returns the current hash
and the writer folds the offer into that instead (a few attempts). Each writer
takes what is queued (up to ``BATCH``) and sends the first attempts in one
pipeline: under load many served offers share one round trip and one socket
write (a write per request had cost about as much CPU as the decision itself);
conflicts are retried one by one. No lost counts under concurrency.

Nothing here raises into a request: a full queue, an open breaker (Redis
known down), a Redis error or counters of another layout are counted in
``tracker_offer_impressions_recorded_total{result}`` and the count is lost
(the cap is then a little more lenient, never stricter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from tracker import keys
from tracker.models.caps import ImpressionCounts
from tracker.serve.breaker import CircuitBreaker
from tracker.serve.metrics import IMPRESSION_RESULTS, OfferMetrics
from tracker.serve.snapshots import stop_tasks

log = logging.getLogger(__name__)

# KEYS[1]: the serving hash. ARGV[1]: the revision read ('' = no hash), ARGV[2]: TTL in ms,
# ARGV[3..]: field, value, ... of the new hash. Returns 1 when written, else the current hash.
WRITE_SERVING_LUA = """
local rev = redis.call('HGET', KEYS[1], 'rev')
if (rev or '') ~= ARGV[1] then
  return redis.call('HGETALL', KEYS[1])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
REVISION_FIELD = "rev"
ATTEMPTS = 4
WORKERS = 4
BATCH = 64


@dataclass(frozen=True, slots=True)
class Served:
    """One offer served: what to fold into the visitor's counters."""

    site_id: str
    visitor_id: str
    offer_id: str
    decision_id: str
    at_ms: int
    session_id: str | None
    # The serving hash as the request read it (the compare-and-set's starting point).
    serving: dict[str, str]


class ImpressionRecorder:
    """Fire-and-forget writer of frequency-cap counters to Redis."""

    def __init__(
        self,
        redis: Redis,
        breaker: CircuitBreaker,
        metrics: OfferMetrics,
        *,
        ttl_seconds: int,
        timeout_seconds: float,
        max_queued: int = 10_000,
        workers: int = WORKERS,
    ) -> None:
        self.ttl_ms = ttl_seconds * 1000
        self.timeout_seconds = timeout_seconds
        self.workers = workers
        self._redis = redis
        self._breaker = breaker
        self._metrics = metrics
        self._script = redis.register_script(WRITE_SERVING_LUA)
        self._queue: asyncio.Queue[Served] = asyncio.Queue(maxsize=max_queued)
        self._tasks: list[asyncio.Task[None]] = []
        self._results = {result: metrics.impressions.labels(result=result) for result in IMPRESSION_RESULTS}
        metrics.impression_queue_depth.set_function(self._queue.qsize)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def record(self, served: Served) -> None:
        """Queue one served offer; never blocks, never raises."""
        try:
            self._queue.put_nowait(served)
        except asyncio.QueueFull:
            self._results["dropped"].inc()

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._drain(), name=f"impressions-{i}") for i in range(self.workers)
            ]

    async def stop(self, *, flush_seconds: float = 2.0) -> None:
        """Write what is queued within ``flush_seconds``, then stop the writers; what is
        still queued is dropped (and counted)."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_seconds):
                    await self._queue.join()
        await stop_tasks(self._tasks)
        self._tasks = []
        while not self._queue.empty():
            self._queue.get_nowait()
            self._results["dropped"].inc()

    async def join(self) -> None:
        """Wait until everything queued so far is written (tests)."""
        await self._queue.join()

    async def _drain(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                for result in await self.write_many(batch):
                    self._results[result].inc()
            except Exception:
                # A bug here must not kill the writer: every later count would be lost silently.
                log.exception("impression recorder: unexpected error")
                self._results["error"].inc(len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _script_args(self, served: Served, fields: dict[str, str]) -> list[str | int] | None:
        """The compare-and-set's arguments folding ``served`` into ``fields``; None if the
        stored counters are of another layout (left alone)."""
        try:
            counts = ImpressionCounts.from_fields(fields)
        except (ValueError, KeyError) as exc:
            log.warning("serving state of a visitor of site %s left alone: %s", served.site_id, exc)
            return None
        counts.record(
            served.offer_id, at_ms=served.at_ms, session_id=served.session_id, decision_id=served.decision_id
        )
        new = counts.to_fields() | {REVISION_FIELD: served.decision_id}
        args: list[str | int] = [fields.get(REVISION_FIELD, ""), self.ttl_ms]
        for name, value in new.items():
            args += (name, value)
        return args

    @staticmethod
    def _current(reply: list) -> dict[str, str]:
        return {
            reply[i].decode("utf-8", "replace"): reply[i + 1].decode("utf-8", "replace")
            for i in range(0, len(reply) - 1, 2)
        }

    async def write_many(self, batch: list[Served]) -> list[str]:
        """Fold served offers into the stored counters, first attempts in one pipeline;
        the result label of each."""
        if self._breaker.state == "open":
            return ["skipped"] * len(batch)  # Redis is known to be down: do not queue up timeouts
        results: list[str | None] = [None] * len(batch)
        pipe = self._redis.pipeline(transaction=False)
        sent: list[int] = []
        for n, served in enumerate(batch):
            args = self._script_args(served, served.serving)
            if args is None:
                results[n] = "unreadable"
                continue
            # EVALSHA by hand: a pipeline given the Script object asks SCRIPT EXISTS first, every time.
            pipe.evalsha(self._script.sha, 1, keys.serving_state(served.site_id, served.visitor_id), *args)
            sent.append(n)
        if sent:
            try:
                async with asyncio.timeout(self.timeout_seconds):
                    replies = await pipe.execute(raise_on_error=False)
            except (RedisError, OSError, TimeoutError) as exc:
                log.debug("impression recorder: write failed: %r", exc)
                replies = [exc] * len(sent)
            for n, reply in zip(sent, replies, strict=True):
                if isinstance(reply, NoScriptError):  # Redis lost its scripts: the Script reloads it
                    results[n] = await self.write(batch[n])
                elif isinstance(reply, Exception):
                    results[n] = "error"
                elif not isinstance(reply, list):
                    results[n] = "recorded"
                else:  # another write came first (two slots of one page): fold into what it wrote
                    results[n] = await self.write(batch[n], self._current(reply), attempts=ATTEMPTS - 1)
        return [result or "error" for result in results]

    async def write(
        self, served: Served, fields: dict[str, str] | None = None, *, attempts: int = ATTEMPTS
    ) -> str:
        """Fold one served offer into the stored counters (read as ``fields``, by default what
        the request read); the result label."""
        if self._breaker.state == "open":
            return "skipped"  # Redis is known to be down: do not queue up timeouts
        key = keys.serving_state(served.site_id, served.visitor_id)
        fields = served.serving if fields is None else fields
        try:
            for _ in range(attempts):
                args = self._script_args(served, fields)
                if args is None:
                    return "unreadable"
                async with asyncio.timeout(self.timeout_seconds):
                    reply = await self._script(keys=[key], args=args)
                if not isinstance(reply, list):
                    return "recorded"
                fields = self._current(reply)
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("impression recorder: write failed: %r", exc)
            return "error"
        return "conflict"
