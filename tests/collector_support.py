"""Builders shared by the collector tests (imported as a plain module from ``tests/``)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI
from kafka import KafkaConsumer

from tracker.collect.server import uvicorn_config
from tracker.devstack.process import free_port
from tracker.schema import DeadLetter, TrackedEvent, parse_tracked
from tracker.settings import Settings

DEFAULT_CLIENT = ("203.0.113.77", 50123)


def now_ms() -> int:
    return int(time.time() * 1000)


def page_view(site_id: str, visitor_id: str = "visitor-0001", **fields: Any) -> dict[str, Any]:
    """A valid page_view event with a fresh event_id."""
    return {
        "type": "page_view",
        "event_id": str(uuid.uuid4()),
        "ts": now_ms(),
        "site_id": site_id,
        "visitor_id": visitor_id,
        "url": "https://shop.example/",
        **fields,
    }


def product_view(site_id: str, visitor_id: str = "visitor-0001", **fields: Any) -> dict[str, Any]:
    return {
        "type": "product_view",
        "event_id": str(uuid.uuid4()),
        "ts": now_ms(),
        "site_id": site_id,
        "visitor_id": visitor_id,
        "product_id": "sku-1",
        "category": "shoes",
        "price": 49.5,
        "currency": "EUR",
        **fields,
    }


@asynccontextmanager
async def running(app: FastAPI, client: tuple[str, int] = DEFAULT_CLIENT) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run (ASGITransport does not), and an HTTP client on it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector.test") as http:
            yield http


def topic_records(bootstrap: str, topic: str, *, timeout: float = 30.0) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) in ``topic`` from the beginning up to its end offsets as of now."""
    from kafka import TopicPartition as SyncTopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [SyncTopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic}: records below the end offsets were not readable"
            for tp, batch in consumer.poll(timeout_ms=200).items():
                records.extend((r.key, r.value) for r in batch if r.offset < end[tp])
        return records
    finally:
        consumer.close()


READ_DEADLINE_SECONDS = 20.0


class TopicTail:
    """Reads the records a topic received since the tail was opened."""

    def __init__(self, consumer: AIOKafkaConsumer, start: dict[TopicPartition, int]) -> None:
        self._consumer = consumer
        self._start = start

    @classmethod
    async def open(cls, bootstrap: str, topic: str) -> TopicTail:
        partitions = await asyncio.to_thread(_partitions, bootstrap, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
        await consumer.start()
        consumer.assign(tps)
        return cls(consumer, await consumer.end_offsets(tps))

    async def read(self) -> list[ConsumerRecord]:
        """Everything appended since opening, up to the end offsets as of now."""
        consumer = self._consumer
        for tp, offset in self._start.items():
            consumer.seek(tp, offset)
        end = await consumer.end_offsets(list(self._start))
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + READ_DEADLINE_SECONDS
        while [tp for tp in end if await consumer.position(tp) < end[tp]]:
            assert time.monotonic() < deadline, "records below the end offsets were not readable"
            batches = await consumer.getmany(*end, timeout_ms=200)
            for tp, batch in batches.items():
                records.extend(r for r in batch if r.offset < end[tp])
        return records

    async def close(self) -> None:
        await self._consumer.stop()


def _partitions(bootstrap: str, topic: str) -> set[int]:
    # aiokafka's consumer knows no topic metadata before it is assigned or subscribed.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = consumer.partitions_for_topic(topic)
    finally:
        consumer.close()
    assert partitions, f"topic {topic!r} does not exist"
    return partitions


class Tails:
    def __init__(self, events: TopicTail, dlq: TopicTail) -> None:
        self.events_tail, self.dlq_tail = events, dlq

    async def events(self, site_id: str) -> list[tuple[bytes | None, TrackedEvent, bytes]]:
        """(key, parsed record, raw value) of this site's records on ``events``."""
        found = []
        for record in await self.events_tail.read():
            tracked = parse_tracked(record.value)
            if tracked.event.site_id == site_id:
                found.append((record.key, tracked, record.value))
        return found

    async def dead_letters(self, site_id: str) -> list[tuple[DeadLetter, bytes]]:
        """This site's records on ``events.dlq`` (matched on the site id or, if unreadable, the payload)."""
        found = []
        for record in await self.dlq_tail.read():
            dead = DeadLetter.model_validate_json(record.value)
            if dead.site_id == site_id or site_id in dead.payload:
                found.append((dead, record.value))
        return found


@asynccontextmanager
async def open_tails(settings: Settings) -> AsyncIterator[Tails]:
    """Tails of ``events`` and ``events.dlq`` from their current ends."""
    events = await TopicTail.open(settings.kafka_bootstrap, settings.topic_events)
    dlq = await TopicTail.open(settings.kafka_bootstrap, settings.topic_events_dlq)
    try:
        yield Tails(events, dlq)
    finally:
        await events.close()
        await dlq.close()


@contextmanager
def serving(app: FastAPI, settings: Settings) -> Iterator[str]:
    """The app behind a real uvicorn server (the collector's own configuration) in a thread;
    yields its base URL. Stopped gracefully on exit."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, settings, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="collector-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the collector server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
