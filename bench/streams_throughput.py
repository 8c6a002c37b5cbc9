"""Events per second one stream worker sustains into Redis (goal: at least 10,000 events/s).

Writes ``--events`` events of ``--visitors`` visitors to a fresh events topic first
(a backlog), then starts one worker (``python -m tracker worker``, a fresh consumer
group) and measures how fast it drains the backlog into Redis profiles: from its
first processed event to the last, read from its own ``tracker_worker_events_total``;
every profile is then checked to hold all of its visitor's events.

Baselines in the same run, on the same backlog, each a process that does nothing with
the records but acknowledge them:

- a plain Faust agent (``noack_take`` batches): Faust's per-record delivery, which the
  worker's input topics no longer take (``tracker/streams/intake.py``);
- the worker's own delivery path (Faust's consumer with the batch intake): the ceiling the
  worker's consumer sets on this machine whatever the worker does.

    .venv/bin/python bench/streams_throughput.py                      # starts its own Kafka + Redis
    .venv/bin/python bench/streams_throughput.py --events 200000 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
import redis
from aiokafka import AIOKafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from tracker import keys
from tracker.devstack.process import free_port
from tracker.devstack.services import ServiceProcess
from tracker.schema import partition_key
from tracker.settings import Settings

PARTITIONS = 4
# How often the worker's /metrics is read: each read costs the worker a few ms of CPU (a
# Prometheus scrape is every 15 s), and the rate's error is at most two polls over the run.
POLL_SECONDS = 0.25
CATEGORIES = ["shoes", "outdoor", "kitchen", "books", "electronics", "garden"]


def make_records(n: int, visitors: int, site: str) -> tuple[list[tuple[bytes, bytes]], dict[str, int]]:
    rng = random.Random(1)
    now = int(time.time() * 1000)
    records, per_visitor = [], {}
    for i in range(n):
        visitor = f"bench-{i % visitors:08d}"
        category = rng.choice(CATEGORIES)
        kind = rng.choice(["product_view", "product_view", "page_view", "page_ping"])
        event = {
            "event_id": str(uuid.uuid4()),
            "type": kind,
            "ts": now - (n - i),
            "site_id": site,
            "visitor_id": visitor,
            "url": f"https://shop.example/{category}",
        }
        if kind == "product_view":
            event |= {"product_id": f"{category}-{rng.randrange(50)}", "category": category, "price": 20.0}
        elif kind == "page_ping":
            event |= {"engaged_ms": rng.randrange(60_000), "scroll_depth": rng.randrange(101)}
        value = orjson.dumps({"schema_version": 1, "event": event, "server": {"received_at": now}})
        records.append((partition_key(site, visitor), value))
        per_visitor[visitor] = per_visitor.get(visitor, 0) + 1
    return records, per_visitor


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def baseline_agent(bootstrap: str, topic: str, n: int, batch: int, intake: bool) -> None:
    """A Faust agent that only acknowledges (run in its own process); prints its rate. With
    ``intake``, its records come through the worker's batch intake instead of its stream."""
    import faust
    from faust.worker import Worker

    from tracker.streams.intake import BatchIntake, install

    app = faust.App(
        f"bench-baseline-{uuid.uuid4().hex[:6]}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
    )
    box = BatchIntake([topic], batch_max=batch, batch_wait_seconds=0.005)
    if intake:
        install(app, box)
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "t0": 0.0}

    def count(records: int) -> None:
        if not seen["n"]:
            seen["t0"] = time.perf_counter()
        seen["n"] += records
        if seen["n"] >= n:
            sys.stdout.write(f"RATE {n / (time.perf_counter() - seen['t0']):.0f}\n")
            sys.stdout.flush()
            os._exit(0)

    @app.agent(source)
    async def drain(stream):  # type: ignore[no-untyped-def]
        if intake:
            async for messages in box.batches():
                for message in messages:
                    app.consumer.ack(message)
                count(len(messages))
            return
        async for events in stream.noack_take(batch, 0.005):
            for event in events:
                await stream.ack(event)
            count(len(events))

    sys.argv = [sys.argv[0], "worker"]
    Worker(app, loglevel="warning").execute_from_commandline()


def run_baseline(bootstrap: str, topic: str, n: int, batch: int, *, intake: bool) -> float:
    mode = "intake" if intake else "stream"
    out = subprocess.run(
        [sys.executable, __file__, "--baseline-agent", bootstrap, topic, str(n), str(batch), mode],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    for line in out.stdout.splitlines() + out.stderr.splitlines():
        if "RATE " in line:
            return float(line.split("RATE ", 1)[1].split()[0])
    raise RuntimeError(f"baseline agent gave no rate:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def scrape(url: str) -> str:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return ""


def metric_sum(text: str, name: str) -> float:
    """The sum of a metric's series (labelled or not) in a Prometheus text exposition."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )


def run(args: argparse.Namespace, bootstrap: str, redis_url: str, logs: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    names = {k: f"bench-{tag}-{k}" for k in ("events", "sessions", "erasures")}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names.values()])
    admin.close()
    site = f"bench-{tag}"
    records, per_visitor = make_records(args.events, args.visitors, site)
    started = time.perf_counter()
    asyncio.run(produce(bootstrap, names["events"], records))
    print(
        f"backlog: {args.events:,} events of {args.visitors:,} visitors on {PARTITIONS} partitions "
        f"(written in {time.perf_counter() - started:.1f}s)"
    )

    if args.baselines:
        baseline = run_baseline(bootstrap, names["events"], args.events, args.batch, intake=False)
        print(f"baseline  Faust agent that only acks:         {baseline:10,.0f} events/s")
        baseline = run_baseline(bootstrap, names["events"], args.events, args.batch, intake=True)
        print(f"baseline  batch intake that only acks:        {baseline:10,.0f} events/s")

    workers = []
    for n in range(args.workers):
        settings = Settings(
            kafka_bootstrap=bootstrap,
            redis_url=redis_url,
            worker_app_id=f"bench-{tag}",
            topic_events=names["events"],
            topic_sessions=names["sessions"],
            topic_erasures=names["erasures"],
            topic_partitions=PARTITIONS,
            worker_web_port=free_port(),
            worker_batch_max=args.batch,
        )
        workers.append(ServiceProcess("worker", settings, logs / f"worker-{n}"))
    urls = [f"http://127.0.0.1:{w.settings.worker_web_port}/metrics" for w in workers]
    try:
        for worker in workers:
            worker.start(timeout=90)
        first = last = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            texts = [scrape(u) for u in urls]
            now = time.perf_counter()
            done = sum(metric_sum(t, "tracker_worker_events_total") for t in texts)
            cpu = sum(metric_sum(t, "process_cpu_seconds_total") for t in texts)
            if done > 0 and first is None:
                first = (now, done, cpu)
            if done >= args.events:
                last = (now, done, cpu)
                break
            time.sleep(POLL_SECONDS)
        if first is None or last is None:
            raise RuntimeError("the worker did not drain the backlog within 15 minutes")
        rate = (last[1] - first[1]) / (last[0] - first[0])
        # CPU per event: what the worker costs whatever else the machine runs meanwhile (the
        # rate above also depends on the broker and Redis sharing the two cores).
        cpu_us = (last[2] - first[2]) / (last[1] - first[1]) * 1e6
        client = redis.Redis.from_url(redis_url)
        visitors = list(per_visitor)
        complete = 0
        for start in range(0, len(visitors), 1000):
            chunk = visitors[start : start + 1000]
            for visitor, raw in zip(chunk, client.mget([keys.profile(site, v) for v in chunk]), strict=True):
                if raw and sum(orjson.loads(raw)["counts"].values()) == per_visitor[visitor]:
                    complete += 1
        client.close()
        label = "worker" if args.workers == 1 else f"{args.workers} workers"
        print(f"{label:9} events -> Redis profiles (batch {args.batch}): {rate:10,.0f} events/s")
        print(f"{label:9} CPU per event: {cpu_us:.1f} us (= {1e6 / cpu_us:,.0f} events/s per core)")
        print(f"profiles complete: {complete:,} of {len(visitors):,}")
    finally:
        for worker in workers:
            worker.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-agent":
        _, _, bootstrap, topic, n, batch, mode = sys.argv
        baseline_agent(bootstrap, topic, int(n), int(batch), mode == "intake")
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--visitors", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500, help="TRACKER_WORKER_BATCH_MAX")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--no-baselines", dest="baselines", action="store_false", help="measure the worker only"
    )
    parser.add_argument("--kafka", help="an existing broker (default: start the local stack)")
    parser.add_argument("--redis-url", help="an existing Redis (with --kafka)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as logs:
        if args.kafka and args.redis_url:
            run(args, args.kafka, args.redis_url, Path(logs))
            return
        from tracker.devstack.stack import LocalStack

        with LocalStack(settings=Settings(environment="test")) as stack:
            run(args, stack.kafka_bootstrap, stack.redis_url, Path(logs))


if __name__ == "__main__":
    main()
