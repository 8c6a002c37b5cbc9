"""The Faust application that turns the ``events`` topic into live visitor profiles.

Built by :func:`create_app` so tests and the CLI configure it from settings; no
broker address or port is a literal here.
"""

from __future__ import annotations

import time

import faust
import prometheus_client
import pydantic
import redis.asyncio as redis_asyncio
from faust.web import Request, Response, View

from tracker.schema import parse_tracked
from tracker.settings import Settings
from tracker.streams.metrics import EVENTS_PROCESSED, PROCESSING_LAG
from tracker.streams.profiles import update_profile

# aiohttp refuses a charset inside content_type; Prometheus reads text format as UTF-8 anyway.
_PROMETHEUS_CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST.split(";", 2)[0] + "; version=0.0.4"


def broker_urls(bootstrap: str) -> list[str]:
    """Faust wants ``kafka://host:port`` URLs, one per bootstrap server."""
    return [f"kafka://{server.strip()}" for server in bootstrap.split(",")]


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.worker_app_id,
        broker=broker_urls(settings.kafka_bootstrap),
        store=settings.worker_store,
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        # A new consumer group starts from the oldest retained event: nothing accepted is skipped.
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.worker_web_port > 0,
        web_bind=settings.worker_web_host,
        web_port=settings.worker_web_port or 6066,
        web_in_thread=False,
    )
    events_topic = app.topic(settings.topic_events, key_serializer="raw", value_serializer="raw")

    @app.agent(events_topic, name="profiles")
    async def build_profiles(stream: faust.Stream[bytes]) -> None:
        """Fold every event into its visitor's profile in Redis, skipping duplicates."""
        redis = redis_asyncio.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        try:
            async for raw in stream:
                try:
                    tracked = parse_tracked(raw)
                except pydantic.ValidationError:
                    # The collector validated it, so this is a producer bug or a schema
                    # migration gap: count it and move on rather than stall the partition.
                    EVENTS_PROCESSED.labels(type="unknown", outcome="invalid").inc()
                    continue
                applied = await update_profile(redis, tracked, settings)
                EVENTS_PROCESSED.labels(
                    type=tracked.event.type.value, outcome="applied" if applied else "duplicate"
                ).inc()
                if applied:
                    PROCESSING_LAG.observe(max(0.0, time.time() - tracked.server.received_at / 1000))
        finally:
            await redis.aclose()

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(
                prometheus_client.generate_latest(), content_type=_PROMETHEUS_CONTENT_TYPE
            )

    return app


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    """Run one worker until SIGINT/SIGTERM; start more to share the partitions."""
    from faust.worker import Worker

    app = create_app(settings)
    Worker(app, loglevel=loglevel).execute_from_commandline()
