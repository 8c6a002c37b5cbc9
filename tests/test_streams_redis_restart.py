"""A real worker whose Redis restarts empty (a Redis without persistence, or one replaced)
writes every profile its table holds again, without a single new event: the offer API reads
profiles only from Redis, so without it every known visitor would be a stranger until their
next visit.

The worker has a Redis of its own here (a throwaway ``redis-server``), since the test restarts it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from streams_support import (
    Producer,
    Worker,
    expected_profiles,
    isolated_settings,
    stored_profiles,
    visit_script,
    wait_for,
)

from tracker.devstack.redis_server import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(data_dir=tmp_path / "redis-1")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_redis_that_restarted_empty_gets_every_profile_again(
    stack, own_redis: RedisServer, site_id: str, tmp_path: Path
) -> None:
    settings = isolated_settings(stack, redis_url=own_redis.url)
    visitors = [f"v-{uuid.uuid4().hex[:12]}" for _ in range(12)]
    worker = Worker(settings, tmp_path).start()
    producer = Producer(settings)
    try:
        producer.send(visit_script(site_id, visitors, events_each=6))
        expected = expected_profiles(settings, producer.written)
        wait_for(lambda: stored_profiles(settings, site_id, expected) == expected, 60, "profiles in Redis")

        # Redis restarts on the same port with nothing in it (a new run id).
        own_redis.stop()
        restarted = RedisServer(data_dir=tmp_path / "redis-2", port=own_redis.port)
        restarted.start()
        try:
            assert stored_profiles(settings, site_id, expected) == {}
            # The worker notices within its check interval and writes the table's profiles again.
            wait_for(
                lambda: stored_profiles(settings, site_id, expected) == expected, 60, "profiles written again"
            )
        finally:
            restarted.stop()
    finally:
        producer.close()
        worker.stop()
