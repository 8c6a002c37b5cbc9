"""Builders shared by the stream worker tests (imported as a plain module from ``tests/``).

Each test runs real worker processes (``python -m tracker worker``) on topics of
its own, so that tests sharing the session's broker never see each other's
records, and compares what lands in Redis with the pure fold of the same records.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from tracker import keys
from tracker.devstack.process import free_port
from tracker.devstack.services import ServiceProcess
from tracker.models.visitor_state import VisitorState
from tracker.schema import SessionRecord, TrackedEvent, partition_key
from tracker.settings import Settings
from tracker.streams.visitors import profile_config

PARTITIONS = 4
# Parts of a stored profile that depend on which segment model was current: not compared.
NONDETERMINISTIC = ("segment", "segment_v")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def isolated_settings(stack: Any, **overrides: Any) -> Settings:
    """Settings for a worker on fresh topics and a fresh consumer group (topics created here)."""
    tag = uuid.uuid4().hex[:8]
    names = {
        "topic_events": f"t5-{tag}-events",
        "topic_sessions": f"t5-{tag}-sessions",
        "topic_erasures": f"t5-{tag}-erasures",
        "topic_decisions": f"t5-{tag}-decisions",
    }
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, client_id="tracker-tests")
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names.values()])
    finally:
        admin.close()
    values: dict[str, Any] = {
        "environment": "test",
        "kafka_bootstrap": stack.kafka_bootstrap,
        "redis_url": stack.redis_url,
        "worker_app_id": f"t5-{tag}",
        "topic_partitions": PARTITIONS,
        "worker_web_port": free_port(),
        "worker_commit_interval_seconds": 0.2,
        "worker_session_timeout_seconds": 6.0,
        "segment_publish_seconds": 1.0,
        "segment_refresh_seconds": 0.5,
        "segment_sample_every": 1,
        "worker_data_dir": Path(tempfile.gettempdir()) / "tracker-test-workers",
        **names,
    }
    values.update(overrides)
    return Settings(**values)


class Worker:
    """One worker process; ``kill()`` is SIGKILL, ``stop()`` a clean SIGTERM."""

    def __init__(self, settings: Settings, log_dir: Path, name: str = "worker") -> None:
        self.settings = settings
        self.service = ServiceProcess("worker", settings, log_dir / name)
        self.metrics_url = f"http://{settings.worker_web_host}:{settings.worker_web_port}/metrics"

    def start(self) -> Worker:
        self.service.start(timeout=90)
        return self

    def kill(self) -> None:
        pid = self.service.process.pid
        assert pid is not None, "the worker is not running"
        os.killpg(pid, signal.SIGKILL)
        self.service.stop()  # reaps the process

    def stop(self) -> None:
        self.service.stop()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a counter's samples matching ``labels`` on this worker's /metrics page."""
        text = httpx.get(self.metrics_url, timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


def event(site_id: str, visitor_id: str, type_: str, ts: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "ts": ts,
        "site_id": site_id,
        "visitor_id": visitor_id,
        **fields,
    }


def tracked(event_: dict[str, Any], received_at: int | None = None) -> TrackedEvent:
    return TrackedEvent.model_validate({"event": event_, "server": {"received_at": received_at or now_ms()}})


class Producer:
    """Writes records as the collector does (key ``site:visitor``, default partitioner) and
    remembers where each landed, so the expected profiles follow the real order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
        self.written: list[tuple[int, int, TrackedEvent]] = []

    def send(self, records: Iterable[TrackedEvent]) -> None:
        futures = []
        for record in records:
            key = partition_key(record.event.site_id, record.event.visitor_id)
            value = record.model_dump_json().encode()
            futures.append((record, self._producer.send(self.settings.topic_events, key=key, value=value)))
        for record, future in futures:
            meta = future.get(timeout=30)
            self.written.append((meta.partition, meta.offset, record))

    def send_raw(self, topic: str, key: bytes, value: bytes) -> None:
        self._producer.send(topic, key=key, value=value).get(timeout=30)

    def close(self) -> None:
        self._producer.close()


def expected_profiles(settings: Settings, written: list[tuple[int, int, TrackedEvent]]) -> dict[str, dict]:
    """What an uninterrupted worker stores for each visitor: the pure fold in offset order."""
    states: dict[str, VisitorState] = {}
    config = profile_config(settings)
    for partition, offset, record in sorted(written, key=lambda w: (w[0], w[1])):
        visitor = record.event.visitor_id
        state = states.setdefault(visitor, VisitorState.new(record.event.site_id, visitor))
        state.apply(record, partition=partition, offset=offset, config=config)
    return {v: comparable(s.profile.to_dict(config)) for v, s in states.items() if s.profile is not None}


def comparable(profile: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in profile.items() if k not in NONDETERMINISTIC}


def stored_profiles(settings: Settings, site_id: str, visitors: Iterable[str]) -> dict[str, dict]:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        visitors = list(visitors)
        raws = client.mget([keys.profile(site_id, v) for v in visitors]) if visitors else []
    finally:
        client.close()
    return {v: comparable(orjson.loads(raw)) for v, raw in zip(visitors, raws, strict=True) if raw}


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")


def read_sessions(settings: Settings, *, min_records: int = 0, timeout: float = 30) -> list[SessionRecord]:
    """Every record on the sessions topic (waiting until at least ``min_records`` are there)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(settings.topic_sessions, p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    records: list[SessionRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(SessionRecord.model_validate_json(m.value) for m in batch)
            end = consumer.end_offsets(parts)
            if len(records) >= min_records and all(consumer.position(p) >= end[p] for p in parts):
                break
    finally:
        consumer.close()
    return records


def visit_script(site_id: str, visitors: list[str], events_each: int, seed: int = 1) -> list[TrackedEvent]:
    """Interleaved visits of several visitors: views, pings, carts, purchases, offers, sessions split by
    long gaps, out-of-order events and client retries (the same event sent again)."""
    import random

    rng = random.Random(seed)
    clocks = {v: now_ms() - 3 * 24 * 3600 * 1000 for v in visitors}
    records: list[TrackedEvent] = []
    for n in range(events_each):
        for v in visitors:
            clocks[v] += rng.choice([3_000, 20_000, 90_000, 2 * 3600 * 1000])
            ts = clocks[v] - (rng.choice([0, 0, 0, 40_000]))  # sometimes out of order
            category = rng.choice(["shoes", "books", "garden", "toys"])
            kind = rng.choice(
                [
                    "page_view",
                    "product_view",
                    "product_view",
                    "page_ping",
                    "add_to_cart",
                    "search",
                    "offer_impression",
                    "offer_click",
                    "purchase",
                ]
            )
            fields: dict[str, Any] = {"url": f"https://shop.example/{category}"}
            if kind == "product_view" or kind == "add_to_cart":
                fields |= {"product_id": f"{category}-{rng.randrange(6)}", "category": category}
            elif kind == "page_ping":
                fields |= {"engaged_ms": rng.randrange(0, 90_000), "scroll_depth": rng.randrange(101)}
            elif kind == "search":
                fields |= {"query": category}
            elif kind.startswith("offer_"):
                fields |= {"decision_id": f"d-{n}", "offer_id": f"{category}-offer"}
            elif kind == "purchase":
                fields |= {
                    "order_id": f"o-{n}",
                    "value": round(rng.uniform(5, 300), 2),
                    "currency": "EUR",
                    "items": [{"product_id": f"{category}-1", "category": category}],
                }
            records.append(tracked(event(site_id, v, kind, ts, **fields)))
            if rng.random() < 0.05:
                records.append(records[rng.randrange(len(records))])  # a client retry, maybe much later
    return records


def produce_paced(producer: Producer, records: list[TrackedEvent], seconds: float) -> Any:
    """Send ``records`` evenly over ``seconds`` from a background thread; ``.join()`` it."""
    import threading

    def run() -> None:
        chunks = max(1, int(seconds / 0.1))
        size = max(1, -(-len(records) // chunks))
        for start in range(0, len(records), size):
            producer.send(records[start : start + size])
            time.sleep(seconds / chunks)

    thread = threading.Thread(target=run, name="paced-producer", daemon=True)
    thread.start()
    return thread
