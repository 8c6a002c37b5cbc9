"""Freshness: time from the collector's 2xx to the visitor's profile in Redis reflecting the
event, p50/p99 at a steady load (goal: p99 under 250 ms).

Starts the local stack, a stream worker and the collector as separate processes (as
``tracker up`` does). A load generator posts batches of events for a pool of visitors
at ``--rate`` events/s; among them, every ``--probe-ms`` a probe posts one event for a
brand-new visitor. Redis keyspace notifications (``notify-keyspace-events K$``) tell
when that visitor's profile is first written; freshness = notification time minus the
time the probe's 2xx arrived (0 when the profile was written even before the answer
reached the client). Both times are taken in this process, on one clock.

    .venv/bin/python bench/streams_freshness.py                       # 1,000 events/s for 30 s
    .venv/bin/python bench/streams_freshness.py --rate 3000 --duration 60 --batch-wait 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
import redis.asyncio as redis_asyncio

from tracker import keys
from tracker.devstack.process import free_port
from tracker.devstack.services import ServiceProcess
from tracker.settings import Settings

WARMUP_SECONDS = 3.0


def event(site: str, visitor: str, n: int) -> dict:
    category = ("shoes", "books", "garden", "toys")[n % 4]
    return {
        "event_id": str(uuid.uuid4()),
        "type": "product_view",
        "ts": int(time.time() * 1000),
        "site_id": site,
        "visitor_id": visitor,
        "url": f"https://shop.example/{category}",
        "product_id": f"{category}-{n % 40}",
        "category": category,
    }


async def measure(args: argparse.Namespace, collector_url: str, redis_url: str) -> list[float]:
    site = f"fresh-{uuid.uuid4().hex[:6]}"
    client = redis_asyncio.from_url(redis_url)
    await client.config_set("notify-keyspace-events", "K$")
    pubsub = client.pubsub()
    db = int(urlpath_db(redis_url))
    await pubsub.psubscribe(f"__keyspace@{db}__:{keys.profile(site, 'probe-*')}")
    written: dict[str, float] = {}
    acked: dict[str, float] = {}
    stop = asyncio.Event()

    async def listen() -> None:
        while not stop.is_set():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is not None:
                key = message["channel"].decode().split(":", 1)[1]
                written.setdefault(key, time.monotonic())

    async def post(http: httpx.AsyncClient, events: list[dict]) -> float:
        response = await http.post(
            collector_url,
            content=orjson.dumps({"events": events}),
            headers={"content-type": "application/json"},
        )
        if response.status_code != 202:
            raise RuntimeError(f"collector answered {response.status_code}: {response.text[:200]}")
        return time.monotonic()

    async def load(http: httpx.AsyncClient, deadline: float) -> None:
        rng = random.Random(1)
        interval = args.load_batch / args.rate
        next_at, n, pending = time.monotonic(), 0, set()
        while next_at < deadline:
            batch = [
                event(site, f"load-{rng.randrange(args.visitors):06d}", n + i) for i in range(args.load_batch)
            ]
            n += args.load_batch
            pending.add(asyncio.ensure_future(post(http, batch)))
            pending = {p for p in pending if not p.done()}
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending)

    async def probes(http: httpx.AsyncClient, start: float, deadline: float) -> None:
        n = 0
        while time.monotonic() < deadline:
            visitor = f"probe-{n:06d}"
            n += 1
            t_ack = await post(http, [event(site, visitor, n)])
            if t_ack - start >= WARMUP_SECONDS:
                acked[keys.profile(site, visitor)] = t_ack
            await asyncio.sleep(args.probe_ms / 1000)

    listener = asyncio.ensure_future(listen())
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        start = time.monotonic()
        deadline = start + args.duration
        await asyncio.gather(load(http, deadline), probes(http, start, deadline))
    wait_until = time.monotonic() + 30
    while time.monotonic() < wait_until and not all(k in written for k in acked):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    stop.set()
    await listener
    await pubsub.aclose()
    await client.aclose()
    missing = [k for k in acked if k not in written]
    if missing:
        print(f"warning: {len(missing)} probes never reached Redis within 30 s")
    return [max(0.0, written[k] - t) for k, t in acked.items() if k in written]


def histogram_quantiles(url: str, name: str = "tracker_worker_event_to_profile_seconds") -> str:
    """p50/p99 upper bounds from the worker's Prometheus histogram (bucket resolution)."""
    buckets = []
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0
    if not total:
        return "no samples"

    def upper(q: float) -> str:
        bound = next(le for le, count in buckets if count >= q * total)
        return f"<= {bound * 1000:.0f} ms"

    return f"p50 {upper(0.5)}, p99 {upper(0.99)} ({total:.0f} events)"


def urlpath_db(url: str) -> str:
    path = url.rsplit("/", 1)[-1]
    return path if path.isdigit() else "0"


def report(args: argparse.Namespace, samples: list[float]) -> None:
    ordered = sorted(samples)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    wait_ms = args.batch_wait * 1000
    print(
        f"load {args.rate:,} events/s for {args.duration:.0f}s (batches of {args.load_batch}), "
        f"worker batch wait {wait_ms:.0f} ms, commit every {args.commit_interval:.1f}s"
    )
    figures = (
        f"p50 {q(0.5):.1f} ms  p90 {q(0.9):.1f} ms  p99 {q(0.99):.1f} ms  max {ordered[-1] * 1000:.1f} ms"
    )
    print(f"freshness, collector 2xx -> profile in Redis, {len(ordered)} probes: {figures}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=1000, help="background events per second")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--load-batch", type=int, default=10, help="events per background request")
    parser.add_argument("--visitors", type=int, default=5000)
    parser.add_argument("--probe-ms", type=float, default=50.0)
    parser.add_argument("--batch-wait", type=float, default=None, help="TRACKER_WORKER_BATCH_WAIT_SECONDS")
    parser.add_argument("--commit-interval", type=float, default=None)
    args = parser.parse_args()
    defaults = Settings()
    args.batch_wait = args.batch_wait if args.batch_wait is not None else defaults.worker_batch_wait_seconds
    if args.commit_interval is None:
        args.commit_interval = defaults.worker_commit_interval_seconds

    from tracker.devstack.stack import LocalStack

    with (
        LocalStack(settings=Settings(environment="test")) as stack,
        tempfile.TemporaryDirectory(prefix="bench-logs-") as logs,
    ):
        settings = stack.service_settings().model_copy(
            update={
                "collector_port": free_port(),
                "worker_web_port": free_port(),
                "allow_unregistered_sites": True,
                "rate_limit_per_second": 0.0,
                "worker_batch_wait_seconds": args.batch_wait,
                "worker_commit_interval_seconds": args.commit_interval,
            }
        )
        services = [ServiceProcess(name, settings, Path(logs)) for name in ("worker", "collector")]
        try:
            for service in services:
                service.start(timeout=90)
            url = f"http://{settings.collector_host}:{settings.collector_port}/v1/events"
            samples = asyncio.run(measure(args, url, settings.redis_url))
            report(args, samples)
            metrics_url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
            print(f"worker's own view (receive time -> Redis write): {histogram_quantiles(metrics_url)}")
        finally:
            for service in reversed(services):
                service.stop()


if __name__ == "__main__":
    main()
