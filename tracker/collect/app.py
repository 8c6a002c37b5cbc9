"""The collector's FastAPI app: ``create_app(settings)`` builds one, ``serve(settings)`` runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from tracker import __version__
from tracker.collect import events, ops
from tracker.collect.metrics import CollectorMetrics
from tracker.collect.producer import BatchProducer, KafkaBatchProducer
from tracker.settings import Settings, get_settings


def create_app(
    settings: Settings | None = None,
    *,
    producer: BatchProducer | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """A collector app. Its producer starts connecting when the app starts, without
    blocking startup: until Kafka answers, ``POST /v1/events`` gets 503 and ``/readyz`` 503.
    Each app has its own metrics registry unless ``registry`` is given."""
    settings = settings if settings is not None else get_settings()
    producer = producer if producer is not None else KafkaBatchProducer(settings)
    metrics = CollectorMetrics(registry)
    metrics.track_producer(lambda: producer.ready)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await producer.start()
        try:
            yield
        finally:
            await producer.stop()

    app = FastAPI(
        title="tracker collector",
        version=__version__,
        description="Receives batches of tracked events and writes them to Kafka.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.producer = producer
    app.state.metrics = metrics
    app.include_router(events.router)
    app.include_router(ops.router)
    return app


def serve(settings: Settings) -> None:
    """Run the collector with uvicorn on ``collector_host:collector_port`` until interrupted."""
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=settings.collector_host,
        port=settings.collector_port,
        # Forwarded headers are not trusted until trusted proxies are configurable:
        # the IP that gets truncated is the TCP peer's.
        proxy_headers=False,
        server_header=False,
        log_level="info",
    )
