"""Kafka stopped in the middle of traffic, then restarted: nothing the collector accepted is lost.

A dedicated local stack (its broker is stopped and started again on the same port and
data, without touching the session's). Senders behave like the snippet: a batch answered
503 is kept and sent again after a pause; a 202 means the collector promised the batch
is in Kafka. At the end every event id of every 202 must be in the ``events`` topic.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from collector_support import page_view, running, topic_records

from tracker.collect.app import create_app
from tracker.devstack.stack import LocalStack
from tracker.kafka_producer import KafkaBatchProducer
from tracker.schema import parse_tracked
from tracker.settings import Settings, SiteConfig

pytestmark = pytest.mark.integration

SITE = "restart-shop"
SENDERS = 4
BATCH = 10
OUTAGE_SECONDS = 2.0


@pytest.fixture(scope="module")
def own_stack() -> Iterator[LocalStack]:
    with LocalStack(settings=Settings(environment="test", topic_partitions=2)) as local:
        yield local


class Sender:
    """One browser-like sender: keeps a batch until it gets a 202, honouring 503."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.acknowledged: list[str] = []
        self.statuses: list[int] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = [page_view(SITE, visitor_id=f"visitor-{uuid.uuid4().hex[:12]}") for _ in range(BATCH)]
            while True:  # the snippet keeps a refused batch and retries it
                response = await self.http.post("/v1/events", json={"site_id": SITE, "events": batch})
                self.statuses.append(response.status_code)
                if response.status_code == 202:
                    assert response.json()["accepted"] == BATCH
                    self.acknowledged.extend(e["event_id"] for e in batch)
                    break
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"]
                await asyncio.sleep(0.2)  # shorter than Retry-After: keeps the test short


async def test_nothing_acknowledged_is_lost_when_kafka_stops_and_restarts(own_stack: LocalStack) -> None:
    settings = own_stack.service_settings().model_copy(
        update={
            "produce_timeout_seconds": 1.5,
            "retry_after_seconds": 1,
            "sites": (SiteConfig(id=SITE),),
            "rate_limit_per_second": 0.0,
        }
    )
    producer = KafkaBatchProducer(settings, reconnect_initial_seconds=0.1, reconnect_max_seconds=0.5)
    assert own_stack.kafka is not None
    broker = own_stack.kafka
    async with running(create_app(settings, producer=producer)) as http:
        senders = [Sender(http) for _ in range(SENDERS)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(s.run(stop)) for s in senders]

        def acknowledged() -> int:
            return sum(len(s.acknowledged) for s in senders)

        await _until(lambda: acknowledged() >= 200, "traffic before the stop")
        await asyncio.to_thread(broker.stop)
        before_outage = acknowledged()
        await asyncio.sleep(OUTAGE_SECONDS)
        refused_during_outage = sum(s.statuses.count(503) for s in senders)
        await asyncio.to_thread(broker.start_again)
        after_restart = acknowledged()
        await _until(lambda: acknowledged() >= after_restart + 200, "traffic after the restart")
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)

    assert refused_during_outage > 0, "the outage was not noticed: the test did not exercise it"
    assert before_outage >= 200
    sent = {event_id for s in senders for event_id in s.acknowledged}
    stored = {
        str(parse_tracked(value).event.event_id)
        for _, value in await asyncio.to_thread(topic_records, broker.bootstrap, settings.topic_events)
    }
    missing = sent - stored
    assert not missing, f"{len(missing)} of {len(sent)} acknowledged events are not in Kafka"


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
