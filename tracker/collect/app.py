"""The collector's FastAPI app: ``create_app(settings)`` builds one, ``serve(settings)`` runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry
from starlette.responses import Response
from starlette.routing import Route

from tracker import __version__
from tracker.collect import events, openapi, ops, pixel, snippet
from tracker.collect.cors import SiteCorsMiddleware
from tracker.collect.deps import CollectorState
from tracker.collect.enrich import parse_networks
from tracker.collect.inflight import InflightBuffer, RequestSlots
from tracker.collect.metrics import CollectorMetrics
from tracker.collect.ratelimit import TokenBucketLimiter
from tracker.collect.responses import error_response
from tracker.collect.server import serve
from tracker.collect.sites import SiteRegistry
from tracker.collect.useragent import warm_up
from tracker.collect.validate import MAX_ERRORS_PER_EVENT
from tracker.heap import settle_heap
from tracker.kafka_producer import BatchProducer, KafkaBatchProducer
from tracker.settings import Settings, get_settings

__all__ = ["create_app", "serve"]


def create_app(
    settings: Settings | None = None,
    *,
    producer: BatchProducer | None = None,
    registry: CollectorRegistry | None = None,
    sites: SiteRegistry | None = None,
    settle_gc: bool = False,
) -> FastAPI:
    """A collector app. Its producer starts connecting when the app starts, without
    blocking startup: until Kafka answers, ``POST /v1/events`` gets 503 and ``/readyz`` 503.
    Each app has its own metrics registry unless ``registry`` is given. The site registry
    is read from ``settings`` now, so a broken sites file stops start-up with its reason.
    ``settle_gc`` (for a process that runs one app) tunes the garbage collector once started
    (:func:`tracker.heap.settle_heap`)."""
    settings = settings if settings is not None else get_settings()
    producer = producer if producer is not None else KafkaBatchProducer(settings)
    sites = sites if sites is not None else SiteRegistry.from_settings(settings)
    limiter = (
        TokenBucketLimiter(
            rate=settings.rate_limit_per_second,
            burst=settings.rate_limit_burst,
            max_keys=settings.rate_limit_max_clients,
        )
        if settings.rate_limit_per_second > 0
        else None
    )
    inflight = InflightBuffer(max_bytes=settings.max_inflight_bytes, max_records=settings.max_inflight_events)
    slots = RequestSlots(settings.max_concurrent_requests)
    metrics = CollectorMetrics(registry)
    metrics.track(
        producer_ready=lambda: producer.ready,
        inflight=lambda: (inflight.bytes, inflight.records),
        rate_limit_keys=lambda: len(limiter) if limiter is not None else 0,
        requests_in_progress=lambda: slots.active,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warm_up()
        await producer.start()
        if settle_gc:
            settle_heap()
        try:
            yield
        finally:
            await producer.stop()

    app = FastAPI(
        title="tracker collector",
        version=__version__,
        description="Receives batches of tracked events and writes them to Kafka. "
        "Contract: docs/ARCHITECTURE.md, 'Collector HTTP contract'.",
        lifespan=lifespan,
    )
    app.state.collector = CollectorState(
        settings=settings,
        producer=producer,
        metrics=metrics,
        sites=sites,
        inflight=inflight,
        slots=slots,
        limiter=limiter,
        trusted_proxies=parse_networks(settings.trusted_proxies),
    )
    app.add_middleware(SiteCorsMiddleware, sites=sites, max_age=settings.cors_max_age_seconds)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    # The hot route, served by Starlette directly: FastAPI's request handling (dependency
    # solving, body and response wrapping) is a fifth of a request's CPU, and this route uses
    # none of it. The FastAPI route stays for the OpenAPI document only.
    app.router.routes.insert(0, Route("/v1/events", events.post_events, methods=["POST"]))
    app.include_router(events.router)
    app.include_router(pixel.router)
    app.include_router(snippet.router)
    app.include_router(ops.router)
    openapi.install(app)
    return app


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """FastAPI's parameter validation errors, in the collector's error shape."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), "message": str(e["msg"])}
        for e in exc.errors()[:MAX_ERRORS_PER_EVENT]
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return error_response(422, "invalid_request", f"Invalid request: {detail}", errors=errors)
