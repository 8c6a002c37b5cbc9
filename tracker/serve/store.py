"""Everything the offer API needs about one visitor, in one Redis round trip.

One ``MGET`` reads the visitor's profile (``trk:v1:profile:{site:visitor}``) and
their frequency-cap counts (``trk:v1:caps:{site:visitor}``); both are written by
the stream worker, so the API only reads. Both keys share the hash tag
``{site:visitor}``, so on Redis Cluster the read touches one slot. The holdout
needs no stored state (a hash of the visitor id).

The read goes out on a connection of its own (:mod:`tracker.serve.lean_redis`, without
redis-py's client and pool layers: 63 against 103 us of CPU per read, ``bench/redis_read_cpu.py``).
Every read is bounded by ``TRACKER_REDIS_TIMEOUT_SECONDS`` and goes through a
:class:`~tracker.serve.breaker.CircuitBreaker`: once Redis has failed
``TRACKER_REDIS_BREAKER_FAILURES`` times in a row, reads are skipped (the
caller serves the default at once) until a probe succeeds.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tracker import keys
from tracker.redisconn import RESP_PROTOCOL
from tracker.serve.breaker import CircuitBreaker
from tracker.serve.lean_redis import LeanCommands, pack_command
from tracker.serve.metrics import OfferMetrics
from tracker.settings import Settings

log = logging.getLogger(__name__)


# Connections one API process may hold. Requests beyond wait for a free one (within the budget):
# a stalled Redis must not turn into a storm of new connections.
MAX_CONNECTIONS = 64

REASON_REDIS_UNAVAILABLE = "redis_unavailable"
REASON_CIRCUIT_OPEN = "circuit_open"
REASON_STATE_UNREADABLE = "profile_unreadable"


@dataclass(frozen=True, slots=True)
class VisitorState:
    """What Redis holds for one visitor: the raw profile JSON and the raw frequency-cap counts
    JSON (each None if there is none: never seen, never served an offer)."""

    profile: bytes | None
    caps: bytes | None = None


class StoreUnavailable(Exception):
    """The visitor could not be read; ``reason`` is what the response reports."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VisitorStore:
    """Reads visitors from Redis within a time budget, behind a circuit breaker."""

    def __init__(
        self, redis: Redis, breaker: CircuitBreaker, metrics: OfferMetrics, *, timeout_seconds: float
    ) -> None:
        self.redis = redis
        # Visitor reads skip redis-py's client and pool layers (connections of redis's settings).
        self._reads = LeanCommands(redis.connection_pool, MAX_CONNECTIONS)
        self.breaker = breaker
        self.timeout_seconds = timeout_seconds
        self._metrics = metrics

    async def read(self, site_id: str, visitor_id: str) -> VisitorState:
        """The visitor's state; raises :class:`StoreUnavailable` when Redis cannot answer in time."""
        if not self.breaker.allow():
            self._metrics.redis_errors.labels(kind="circuit_open").inc()
            raise StoreUnavailable(REASON_CIRCUIT_OPEN)
        started = time.perf_counter()
        try:
            # Socket timeouts bound each read; this bounds connect + send + read together.
            async with asyncio.timeout(self.timeout_seconds):
                profile, caps = await self._reads.execute(
                    pack_command("MGET", keys.profile(site_id, visitor_id), keys.caps(site_id, visitor_id))
                )
        except ResponseError as exc:
            # Redis answered with an error (say, a command refused by an ACL): not an outage, no trip.
            self.breaker.success()
            log.warning("unreadable visitor state for site %s: %s", site_id, exc)
            raise StoreUnavailable(REASON_STATE_UNREADABLE) from exc
        except (TimeoutError, RedisTimeoutError) as exc:
            self._failed("timeout", exc)
            raise StoreUnavailable(REASON_REDIS_UNAVAILABLE) from exc
        except (RedisConnectionError, OSError) as exc:
            self._failed("connection", exc)
            raise StoreUnavailable(REASON_REDIS_UNAVAILABLE) from exc
        except RedisError as exc:
            self._failed("error", exc)
            raise StoreUnavailable(REASON_REDIS_UNAVAILABLE) from exc
        finally:
            self._metrics.redis_duration.observe(time.perf_counter() - started)
        self.breaker.success()
        return VisitorState(profile=profile, caps=caps)

    async def aclose(self) -> None:
        await self._reads.aclose()

    async def ping(self) -> str:
        """``ok`` or ``unavailable: <why>`` (for readiness; does not count towards the breaker)."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                await self.redis.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            return f"unavailable: {type(exc).__name__}"
        return "ok"

    def _failed(self, kind: str, exc: BaseException) -> None:
        log.debug("visitor read failed: %r", exc)
        self._metrics.redis_errors.labels(kind=kind).inc()
        self.breaker.failure()


def redis_client(settings: Settings) -> Redis:
    """The offer API's Redis client (its pool's settings also make the visitor reads' connections).

    Every caller bounds its whole call (pool wait, connect, send, read) with
    ``asyncio.timeout(TRACKER_REDIS_TIMEOUT_SECONDS)``, and redis-py drops a connection whose
    command was cancelled, so the client itself sets no socket timeout: with one, redis-py
    wraps every send in ``asyncio.wait_for`` (a task per command) and every read in a second
    timeout context: 95-100 against 83-87 us of CPU per visitor read, 8 concurrent readers.

    No retries: one attempt must fit in the request's budget, the next request tries
    again (a visitor read sent on a connection the server had closed while idle is sent once
    more on a new one, :mod:`tracker.serve.lean_redis`). A bounded pool: a request waits
    (within the budget) for a free connection rather than opening one more. New connections
    skip ``CLIENT SETINFO`` (a round trip, and a package-metadata lookup in redis-py): a read
    that times out must drop its connection, so under stress connections are made often and
    must be cheap.
    """
    timeout = settings.redis_timeout_seconds
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=MAX_CONNECTIONS,
        protocol=RESP_PROTOCOL,
        timeout=timeout,
        socket_timeout=None,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        **_without_client_setinfo(),
    )
    return Redis.from_pool(pool)


def _without_client_setinfo() -> dict[str, Any]:
    # redis-py 7+ takes driver_info=None; older versions lib_name/lib_version=None.
    if "driver_info" in inspect.signature(AbstractConnection.__init__).parameters:
        return {"driver_info": None}
    return {"lib_name": None, "lib_version": None}
