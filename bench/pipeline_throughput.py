"""End-to-end throughput: browser batches -> collector -> Kafka -> worker -> Redis profiles.

Starts the local stack and the three services as separate processes (as
``tracker up`` does), sends ``--events`` events in batches of ``--batch`` from
``--concurrency`` concurrent HTTP clients, and reports:

- collector intake: events/s acknowledged (202) by the collector;
- baseline in the same run: events/s that a bare aiokafka producer (acks=all)
  writes to the same broker, so the collector's overhead can be read off;
- worker drain: events/s from the first event sent until the last visitor's
  profile holds all of its events (what the offer API can see).

Usage: ``.venv/bin/python bench/pipeline_throughput.py [--events 20000] [--batch 50]``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
import redis.asyncio as redis_asyncio
from aiokafka import AIOKafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from tracker import keys
from tracker.devstack.services import SERVICES, ServiceProcess, on_free_ports
from tracker.devstack.stack import LocalStack
from tracker.schema import ServerContext, TrackedEvent, parse_event, partition_key
from tracker.settings import Settings

CATEGORIES = ["shoes", "outdoor", "kitchen", "books", "electronics", "garden"]


def make_events(n: int, visitors: int, site: str) -> list[dict]:
    now = int(time.time() * 1000)
    return [
        {
            "event_id": str(uuid.uuid4()),
            "type": "product_view",
            "ts": now,
            "site_id": site,
            "visitor_id": f"bench-{i % visitors:08d}",
            "url": "https://shop.example/p/x",
            "product_id": f"p-{i % 97}",
            "category": CATEGORIES[i % len(CATEGORIES)],
        }
        for i in range(n)
    ]


async def baseline_producer(bootstrap: str, topic: str, events: list[dict]) -> float:
    """Events/s for a bare idempotent acks=all producer writing the same records."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        now = int(time.time() * 1000)
        records = [
            (
                partition_key(e["site_id"], e["visitor_id"]),
                TrackedEvent(event=parse_event(e), server=ServerContext(received_at=now))
                .model_dump_json()
                .encode(),
            )
            for e in events
        ]
        started = time.perf_counter()
        futures = [await producer.send(topic, value=value, key=key) for key, value in records]
        await asyncio.gather(*futures)
        return len(records) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def send_through_collector(url: str, events: list[dict], batch: int, concurrency: int) -> float:
    batches = [events[i : i + batch] for i in range(0, len(events), batch)]
    queue: asyncio.Queue[list[dict]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def client() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while not queue.empty():
                body = orjson.dumps({"events": queue.get_nowait()})
                response = await http.post(url, content=body, headers={"content-type": "application/json"})
                if response.status_code != 202:
                    raise RuntimeError(f"collector answered {response.status_code}: {response.text[:200]}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return len(events) / (time.perf_counter() - started)


async def wait_for_profiles(redis_url: str, site: str, expected: dict[str, int], limit_s: float) -> float:
    client = redis_asyncio.from_url(redis_url)
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline:
            ids = list(expected)
            raws = await client.mget([keys.profile(site, v) for v in ids])
            done = sum(
                1
                for visitor, raw in zip(ids, raws, strict=True)
                if raw and sum(orjson.loads(raw)["counts"].values()) >= expected[visitor]
            )
            if done == len(ids):
                return time.monotonic()
            await asyncio.sleep(0.1)
        raise TimeoutError(f"profiles not complete after {limit_s:.0f}s")
    finally:
        await client.aclose()


async def run(args: argparse.Namespace, settings: Settings) -> None:
    site = f"bench-{uuid.uuid4().hex[:6]}"
    events = make_events(args.events, args.visitors, site)
    expected: dict[str, int] = {}
    for e in events:
        expected[e["visitor_id"]] = expected.get(e["visitor_id"], 0) + 1

    baseline = await baseline_producer(
        settings.kafka_bootstrap, "bench-baseline", make_events(args.events, args.visitors, site)
    )
    url = f"http://{settings.collector_host}:{settings.collector_port}/v1/events"
    sent_at = time.monotonic()
    intake = await send_through_collector(url, events, args.batch, args.concurrency)
    done_at = await wait_for_profiles(settings.redis_url, site, expected, limit_s=600)
    drain = args.events / (done_at - sent_at)

    print(f"events={args.events} visitors={args.visitors} batch={args.batch} concurrency={args.concurrency}")
    print(f"baseline  bare aiokafka producer (acks=all):   {baseline:10,.0f} events/s")
    print(f"collector intake (HTTP 202 after Kafka ack):  {intake:10,.0f} events/s")
    print(f"pipeline  sent -> every profile complete:     {drain:10,.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--visitors", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with (
        LocalStack(settings=Settings(environment="test")) as stack,
        tempfile.TemporaryDirectory(prefix="bench-logs-") as logs,
    ):
        # Create the baseline topic like the others: the broker does not auto-create topics.
        admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
        admin.create_topics([NewTopic("bench-baseline", stack.settings.topic_partitions, 1)])
        admin.close()

        settings = on_free_ports(stack.service_settings()).model_copy(
            update={
                # The bench's site is registered nowhere, and all its clients share 127.0.0.0/24.
                "allow_unregistered_sites": True,
                "rate_limit_per_second": 0.0,
            }
        )
        services = [ServiceProcess(name, settings, Path(logs)) for name in SERVICES]
        try:
            for service in services:
                service.start(timeout=90)
            asyncio.run(run(args, settings))
        finally:
            for service in reversed(services):
                service.stop()


if __name__ == "__main__":
    main()
