"""The offer API application: ``create_app(settings)`` and ``serve(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from tracker import __version__
from tracker.collect.cors import SiteCorsMiddleware
from tracker.collect.sites import SiteRegistry
from tracker.errors import CatalogueError
from tracker.heap import settle_heap
from tracker.http_protocol import CoalescingHttpToolsProtocol
from tracker.kafka_producer import KafkaBatchProducer
from tracker.models.catalogue import Catalogue
from tracker.models.learner import ClickModel, SnapshotError
from tracker.redisconn import RESP_PROTOCOL, background_client
from tracker.serve import admin_offers, offers, ops, privacy
from tracker.serve.breaker import CircuitBreaker
from tracker.serve.catalogue_store import CatalogueStore, open_redis_catalogue_cache
from tracker.serve.decisions import DecisionLog
from tracker.serve.fastpath import answer_offers
from tracker.serve.metrics import HttpMetricsMiddleware, OfferMetrics
from tracker.serve.multiprocess_metrics import MULTIPROC_DIR_ENV
from tracker.serve.ratelimit import RateLimiter
from tracker.serve.responses import validation_error_body
from tracker.serve.snapshots import (
    MODEL_LOAD_TIMEOUT_SECONDS,
    VersionedCache,
    catalogue_version,
    file_catalogue_cache,
    redis_model_cache,
    static_cache,
)
from tracker.serve.store import VisitorStore, redis_client
from tracker.settings import Settings, get_settings, settings_env

log = logging.getLogger(__name__)

# Nothing waits for a decision record (and an erasure request can wait 20 ms): records of
# 20 ms share a produce request. With the producer's default of 2 ms, 1,000 offers/s make up
# to 500 produce requests a second, each work for this process and for the broker.
PRODUCER_LINGER_SECONDS = 0.02
# What each worker process runs when TRACKER_API_WORKERS > 1 (uvicorn imports it by name).
WORKER_APP_FACTORY = "tracker.serve.app:worker_app"


class OfferAPI(FastAPI):
    """FastAPI, with ``GET /v1/offers`` handed to ``offer_fast_path`` (when set) before any of
    FastAPI's own layers: its exception, telemetry and body-limit middlewares and its routing
    cost an offer request more CPU than the middlewares it needs (timing and counting, CORS),
    which the fast path brings along (see :func:`create_app`)."""

    offer_fast_path: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast_path = self.offer_fast_path
        if (
            fast_path is not None
            and scope["type"] == "http"
            and scope["path"] == offers.OFFERS_PATH
            and scope["method"] == "GET"
        ):
            scope["app"] = self  # as Starlette sets it: the fast path reads ``app.state``
            await fast_path(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    catalogue: Catalogue | None = None,
    settle_gc: bool = False,
    fast_path: bool = True,
) -> FastAPI:
    """Build the offer API. ``catalogue`` replaces the file at ``settings.catalogue_path``
    (and then never reloads). ``settle_gc`` (for a process that runs one app) tunes the
    garbage collector once started (:func:`tracker.heap.settle_heap`). ``fast_path=False``
    leaves ``GET /v1/offers`` to its FastAPI route (tests compare the two).

    Nothing connects until the lifespan starts; an invalid catalogue stops the
    start-up with a message naming the offer at fault. Kafka and Redis may be
    down at start-up: the API serves defaults and connects when they come back.
    """
    settings = settings or get_settings()
    metrics = OfferMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The catalogue's own client: its refresh loop and the admin API (snapshots, not visitors).
        catalogue_redis = Redis(
            connection_pool=BlockingConnectionPool.from_url(
                settings.redis_url,
                protocol=RESP_PROTOCOL,
                socket_timeout=MODEL_LOAD_TIMEOUT_SECONDS,
                socket_connect_timeout=MODEL_LOAD_TIMEOUT_SECONDS,
                max_connections=4,
                timeout=MODEL_LOAD_TIMEOUT_SECONDS,
            )
        )
        app.state.catalogue_store = None
        app.state.catalogue_source = "static" if catalogue is not None else settings.catalogue_source
        if app.state.catalogue_source == "redis":
            app.state.catalogue_store = CatalogueStore(
                catalogue_redis, settings.worker_app_id, timeout_seconds=MODEL_LOAD_TIMEOUT_SECONDS
            )
        try:
            app.state.catalogue = await _catalogue_cache(
                settings, metrics, catalogue, app.state.catalogue_store
            )
            await app.state.catalogue.start()
        except BaseException:
            await catalogue_redis.aclose()
            raise
        for warning in app.state.catalogue.value.warnings:
            log.warning("catalogue: %s", warning)
        redis = redis_client(settings)
        breaker = CircuitBreaker(
            failure_threshold=settings.redis_breaker_failures,
            reset_seconds=settings.redis_breaker_reset_seconds,
            on_change=metrics.breaker_changed,
        )
        app.state.store = VisitorStore(
            redis, breaker, metrics, timeout_seconds=settings.redis_timeout_seconds
        )
        # Snapshots are larger than a visitor's state: their own client, with a longer timeout.
        model_redis = background_client(
            settings.redis_url, timeout_seconds=MODEL_LOAD_TIMEOUT_SECONDS, max_connections=2
        )
        app.state.model = _model_cache(settings, metrics, model_redis)
        # One producer per process: the decision log (fire and forget) and erasure requests.
        app.state.kafka = KafkaBatchProducer(
            settings, client_id="tracker-offer-api", linger_seconds=PRODUCER_LINGER_SECONDS
        )
        app.state.decisions = DecisionLog(
            app.state.kafka, settings, metrics, max_queued=settings.decision_queue_max
        )
        app.state.privacy_limiter = RateLimiter(
            rate_per_second=settings.privacy_rate_per_second, burst=settings.privacy_rate_burst
        )
        await app.state.kafka.start()
        await app.state.decisions.start()
        await app.state.model.start()  # never fails: the untrained model until a snapshot loads
        # Open the first connection now rather than on the first visitor's request; failure is fine here.
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(settings.redis_timeout_seconds):
                await redis.ping()
        if settle_gc:
            settle_heap()  # shorter, rarer GC pauses on the request path (tracker/heap.py)
        try:
            yield
        finally:
            await app.state.catalogue.stop()
            await app.state.model.stop()
            await app.state.decisions.stop()
            await app.state.kafka.stop()
            await model_redis.aclose()
            await catalogue_redis.aclose()
            await app.state.store.aclose()
            await redis.aclose()

    app = OfferAPI(
        title="Tracker offer API",
        version=__version__,
        summary="The next-best offer for a visitor, in a few milliseconds.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.policy = offers.Policy.from_settings(settings)
    app.include_router(offers.router)
    app.include_router(privacy.router)
    app.include_router(admin_offers.router)
    app.include_router(ops.router)
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    # Pages of the registered sites (their origins: deploy/sites.yaml) read offers from the
    # browser snippet; only /v1/offers, never the privacy endpoints.
    sites = SiteRegistry.from_settings(settings)
    cors = {"sites": sites, "max_age": settings.cors_max_age_seconds, "path_prefix": offers.OFFERS_PATH}
    app.add_middleware(SiteCorsMiddleware, **cors)
    # Outermost, so that it times and counts every answer, errors included.
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    if fast_path:
        # GET /v1/offers skips every FastAPI layer, inside the same two middlewares as above.
        offers_with_cors = SiteCorsMiddleware(answer_offers, **cors)
        app.offer_fast_path = HttpMetricsMiddleware(offers_with_cors, metrics=metrics)
    return app


def worker_app() -> FastAPI:
    """The app of one of several worker processes, configured by the environment its parent set."""
    return create_app(get_settings(), settle_gc=True)


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    """How the offer API runs: uvloop and httptools (the fast C implementations), each response
    in one write (:mod:`tracker.http_protocol`), no access log; ``settings.api_workers``
    processes (each imports :data:`WORKER_APP_FACTORY`), or the app in this one."""
    workers = settings.api_workers
    return uvicorn.Config(
        WORKER_APP_FACTORY if workers > 1 else create_app(settings, settle_gc=True),
        factory=workers > 1,
        workers=workers,
        host=settings.api_host,
        port=settings.api_port,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,
        # Access logs would write visitor ids (query strings) to disk, outside erasure's reach.
        access_log=False,
        server_header=False,
        # The client address (rate limits of the privacy endpoints) comes from X-Forwarded-For
        # only behind the proxies of TRACKER_TRUSTED_PROXIES; otherwise the header is not read.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
        lifespan="on",
    )


def serve(settings: Settings) -> None:
    """Run the offer API on ``settings.api_host:settings.api_port`` until stopped: in this
    process, or in ``settings.api_workers`` processes sharing the port (uvicorn replaces any
    that dies)."""
    if settings.api_workers == 1:
        uvicorn.Server(uvicorn_config(settings)).run()
        return
    # Each run starts its figures from zero (stale files would add to them), in a directory
    # the workers share; both it and the settings reach them through their environment.
    with tempfile.TemporaryDirectory(prefix="tracker-api-metrics-") as directory:
        os.environ.update(settings_env(settings))
        os.environ[MULTIPROC_DIR_ENV] = directory
        config = uvicorn_config(settings)
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
        supervisor.run()
    if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
        # A worker could not start (its log says why), so none can: fail like one process does.
        raise SystemExit(STARTUP_FAILURE)


async def _catalogue_cache(
    settings: Settings, metrics: OfferMetrics, catalogue: Catalogue | None, store: CatalogueStore | None
) -> VersionedCache[Catalogue]:
    def loaded(value: Catalogue, version: str) -> None:
        metrics.catalogue_loaded(len(value.offers), version)

    def failed(exc: Exception) -> None:
        # Catalogues that cannot be used (a bad file edit or snapshot) count; Redis being
        # unreachable does not (the visitor reads count it in tracker_offer_redis_errors_total).
        if isinstance(exc, CatalogueError):
            metrics.catalogue_reload_errors.inc()

    if catalogue is not None:
        return static_cache("catalogue", catalogue, catalogue_version(catalogue), on_loaded=loaded)
    if store is not None:
        # Redis's catalogue, seeded from the file; the file while Redis is unreachable at start.
        return await open_redis_catalogue_cache(
            store,
            settings.catalogue_path,
            interval_seconds=settings.catalogue_refresh_seconds,
            on_loaded=loaded,
            on_error=failed,
            start_timeout_seconds=min(MODEL_LOAD_TIMEOUT_SECONDS, 10 * settings.redis_timeout_seconds),
        )
    return file_catalogue_cache(
        settings.catalogue_path,
        interval_seconds=settings.catalogue_refresh_seconds,
        on_loaded=loaded,
        on_error=lambda exc: metrics.catalogue_reload_errors.inc(),
    )


def _model_cache(settings: Settings, metrics: OfferMetrics, redis: Redis) -> VersionedCache[ClickModel]:
    def failed(exc: Exception) -> None:
        # Only snapshots that cannot be used count: Redis being unreachable is counted elsewhere.
        if isinstance(exc, SnapshotError):
            metrics.model_reload_errors.inc()

    return redis_model_cache(
        redis,
        settings.worker_app_id,
        interval_seconds=settings.model_refresh_seconds,
        on_loaded=lambda model, version: metrics.model_loaded(version, model.updates),
        on_error=failed,
        # A restarted replica decides with the published model from its first request, unless
        # Redis is slow: then it starts untrained and the refresh loop catches up.
        start_timeout_seconds=min(MODEL_LOAD_TIMEOUT_SECONDS, 10 * settings.redis_timeout_seconds),
    )


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    return Response(validation_error_body(exc.errors()), status_code=422, media_type="application/json")
