"""The offer API application: ``create_app(settings)`` and ``serve(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tracker import __version__
from tracker.models.catalogue import Catalogue, load_catalogue
from tracker.serve import offers, ops
from tracker.serve.decisions import DecisionLog
from tracker.serve.metrics import OfferMetrics
from tracker.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, catalogue: Catalogue | None = None) -> FastAPI:
    """Build the offer API. ``catalogue`` overrides the file at ``settings.catalogue_path``.

    Nothing connects until the lifespan starts; an invalid catalogue stops the
    start-up with a message naming the offer at fault.
    """
    settings = settings or get_settings()
    metrics = OfferMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.catalogue = catalogue or load_catalogue(settings.catalogue_path)
        for warning in app.state.catalogue.warnings:
            log.warning("catalogue: %s", warning)
        app.state.redis = _redis_client(settings)
        app.state.decisions = DecisionLog(settings, metrics)
        await app.state.decisions.start()
        # Open the first connection now rather than on the first visitor's request; failure is fine here.
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(settings.redis_timeout_seconds):
                await app.state.redis.ping()
        try:
            yield
        finally:
            await app.state.decisions.stop()
            await app.state.redis.aclose()

    app = FastAPI(
        title="Tracker offer API",
        version=__version__,
        summary="The next-best offer for a visitor, in a few milliseconds.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(offers.router)
    app.include_router(ops.router)
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    return app


def serve(settings: Settings) -> None:
    """Run the offer API with uvicorn on ``settings.api_host:settings.api_port`` until stopped."""
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        # Access logs would write visitor ids (query strings) to disk, outside erasure's reach.
        access_log=False,
        lifespan="on",
    )


def _redis_client(settings: Settings) -> Redis:
    timeout = settings.redis_timeout_seconds
    # No retries: one attempt must fit in the request's budget; the next request tries again.
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """422 with one readable sentence per bad parameter; the bad values are not echoed back."""
    errors = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        where, name = (loc[0], ".".join(loc[1:])) if len(loc) > 1 else ("request", ".".join(loc))
        if error.get("type") == "missing":
            message = f"{where} parameter {name!r} is required"
        else:
            message = f"{where} parameter {name!r} is invalid: {error.get('msg', 'invalid value')}"
        errors.append({"loc": loc, "type": error.get("type"), "message": message})
    body = {"detail": "; ".join(e["message"] for e in errors) or "invalid request", "errors": errors}
    return Response(orjson.dumps(body), status_code=422, media_type="application/json")
