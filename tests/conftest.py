"""Shared fixtures: one real Kafka broker and one real Redis for the whole test session.

By default the session starts them with :mod:`tracker.devstack` (the same code
behind ``tracker up``) and stops them at the end. To iterate faster against
services you already run, set ``TRACKER_TEST_KAFKA_BOOTSTRAP`` and
``TRACKER_TEST_REDIS_URL``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tracker.settings import Settings


@dataclass(frozen=True)
class StackEndpoints:
    kafka_bootstrap: str
    redis_url: str

    def service_settings(self, app: str, *, own_topics: bool = False, **overrides: Any) -> Settings:
        """Settings for the product's services on this stack: free loopback ports, and a worker
        app id of its own (``<app>-<random>``: its own consumer group, table and Redis keys, so
        earlier tests' offsets and data do not matter). ``own_topics``: topics of its own too,
        created here. A new consumer group reads a shared topic from its oldest record, so
        services on the shared topics first work through what earlier tests sent there, and a
        stream worker learns from earlier tests' decisions."""
        from tracker.devstack.services import on_free_ports
        from tracker.devstack.topics import create_topics

        base = Settings(
            environment="test", kafka_bootstrap=self.kafka_bootstrap, redis_url=self.redis_url, **overrides
        )
        settings = on_free_ports(base, app=app)
        if own_topics:
            names = ("events", "events_dlq", "decisions", "sessions", "erasures")
            tag = settings.worker_app_id
            settings = settings.model_copy(update={f"topic_{name}": f"{tag}.{name}" for name in names})
            create_topics(settings)
        return settings


@pytest.fixture(scope="session")
def stack() -> Iterator[StackEndpoints]:
    """Real Kafka (KRaft) and Redis on loopback, with the project's topics created."""
    external_kafka = os.environ.get("TRACKER_TEST_KAFKA_BOOTSTRAP")
    external_redis = os.environ.get("TRACKER_TEST_REDIS_URL")
    if external_kafka and external_redis:
        from tracker.devstack.topics import create_topics

        create_topics(Settings(kafka_bootstrap=external_kafka))
        yield StackEndpoints(external_kafka, external_redis)
        return

    from tracker.devstack.stack import LocalStack

    with LocalStack(settings=Settings(environment="test")) as local:
        yield StackEndpoints(local.kafka_bootstrap, local.redis_url)


@pytest.fixture
def settings(stack: StackEndpoints) -> Settings:
    """Settings pointing at the session's real services."""
    return Settings(
        environment="test",
        kafka_bootstrap=stack.kafka_bootstrap,
        redis_url=stack.redis_url,
        redis_timeout_seconds=2.0,
    )


@pytest.fixture
def site_id() -> str:
    """A site id unique to the test, so tests sharing the broker and Redis never see each other's data."""
    return f"test-{uuid.uuid4().hex[:10]}"
