"""Collector intake: events/s accepted into Kafka, request latency, and where load shedding starts.

Starts the local stack and the collector as its own process (``python -m tracker
collector``, exactly as deployed), then drives it over plain HTTP/1.1 keep-alive
connections with realistic batches (``--batch-min``..``--batch-max`` events, 10-20 by
default). Every figure counts only 202 answers, which the collector sends after Kafka
acknowledged the batch (acks=all).

1. **Saturation** (closed loop): ``--connections`` clients send back to back for
   ``--seconds``: the sustained events/s, and latency when saturated.
2. **Rate steps** (open loop): fixed request rates from 20 % to 150 % of the saturated
   rate, ``--step-seconds`` each. Latency runs from each request's *scheduled* time, so
   queueing is counted (no coordinated omission). A step "sheds" when more than 0.1 %
   of its requests get anything but 202 (the collector's 503s, or "unsent": the
   generator's own ``--max-connections`` were all busy), or it achieves under 95 % of
   the offered rate.

The load generator is deliberately thin (pre-encoded bodies, raw sockets): on a 2-core
machine it shares the CPUs with the collector and the Kafka broker.

Usage: ``.venv/bin/python bench/collector_intake.py [--seconds 10] [--connections 32]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tracker.devstack.process import free_port
from tracker.devstack.services import ServiceProcess
from tracker.devstack.stack import LocalStack
from tracker.heap import settle_heap
from tracker.settings import Settings, SiteConfig

SITE = "bench-shop"
CATEGORIES = ["shoes", "outdoor", "kitchen", "books", "electronics", "garden"]
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)


def make_bodies(count: int, batch_min: int, batch_max: int, seed: int = 7) -> list[tuple[bytes, int]]:
    """Pre-encoded request bodies (and their event counts): realistic visitor batches."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    bodies = []
    for b in range(count):
        visitor = f"bench-visitor-{rng.randrange(50_000):06d}"
        events = []
        for i in range(rng.randint(batch_min, batch_max)):
            kind = rng.choice(("page_view", "product_view", "page_ping"))
            event = {
                "event_id": str(uuid.uuid4()),
                "type": kind,
                "ts": now + b * 10 + i,
                "site_id": SITE,
                "visitor_id": visitor,
                "session_id": f"session-{visitor[-6:]}",
                "url": f"https://shop.example/{rng.choice(CATEGORIES)}/p-{rng.randrange(500)}",
                "referrer": "https://shop.example/",
            }
            if kind == "product_view":
                event.update(
                    product_id=f"p-{rng.randrange(500)}", category=rng.choice(CATEGORIES), price=19.9
                )
            elif kind == "page_ping":
                event.update(scroll_depth=rng.randrange(101), engaged_ms=rng.randrange(60_000))
            events.append(event)
        body = orjson.dumps({"site_id": SITE, "sent_at": now, "events": events})
        bodies.append((body, len(events)))
    return bodies


def request_bytes(host: str, body: bytes) -> bytes:
    return (
        f"POST /v1/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain;charset=UTF-8\r\n"
        f"Origin: https://shop.example\r\nUser-Agent: {USER_AGENT}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Connection:
    """One keep-alive HTTP/1.1 connection; ``send`` returns the status code."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def send(self, payload: bytes) -> int:
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    events: int = 0
    errors: int = 0

    def add(self, status: int, seconds: float, events: int) -> None:
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 202:
            self.events += events

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.errors

    @property
    def refused(self) -> int:
        return self.requests - self.statuses.get(202, 0)

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def saturate(
    host: str, port: int, payloads: list[tuple[bytes, int]], connections: int, seconds: float
) -> tuple[Tally, float]:
    tally = Tally()
    stop_at = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        conn = await Connection.open(host, port)
        i = offset
        try:
            while time.perf_counter() < stop_at:
                payload, events = payloads[i % len(payloads)]
                i += connections
                started = time.perf_counter()
                tally.add(await conn.send(payload), time.perf_counter() - started, events)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(connections)))
    return tally, time.perf_counter() - started


async def open_loop(
    host: str, port: int, payloads: list[tuple[bytes, int]], rate: float, seconds: float, max_connections: int
) -> tuple[Tally, float]:
    """Requests at a fixed rate whatever the answers; latency from the scheduled time."""
    tally = Tally()
    # Connections for 20 ms of requests are opened before the clock starts, as wrk opens
    # its connections up front: opening them on demand, at rates in the thousands, made
    # the first half-second of a step its p99. More are opened when needed.
    warm = min(max_connections, int(rate * 0.02) + 1)
    idle: list[Connection] = list(await asyncio.gather(*(Connection.open(host, port) for _ in range(warm))))
    opened = len(idle)
    pending: set[asyncio.Task[None]] = set()

    async def one(payload: bytes, events: int, scheduled: float) -> None:
        nonlocal opened
        reused = bool(idle)
        if reused:
            conn = idle.pop()
        elif opened < max_connections:
            opened += 1
            conn = await Connection.open(host, port)
        else:
            tally.errors += 1  # the generator's own limit: counted as not served
            return
        try:
            status = await conn.send(payload)
        except (OSError, asyncio.IncompleteReadError):
            conn.close()
            if not reused:
                tally.errors += 1
                opened -= 1
                return
            # The server closed a connection left idle past its keep-alive timeout (a
            # browser resends on a new one too): one retry on a fresh connection, and its
            # latency still runs from the scheduled time.
            try:
                conn = await Connection.open(host, port)
                status = await conn.send(payload)
            except (OSError, asyncio.IncompleteReadError):
                tally.errors += 1
                opened -= 1
                return
        tally.add(status, time.perf_counter() - scheduled, events)
        idle.append(conn)

    total = int(rate * seconds)
    start = time.perf_counter()
    for n in range(total):
        scheduled = start + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        payload, events = payloads[n % len(payloads)]
        task = asyncio.create_task(one(payload, events, scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=30)
    elapsed = time.perf_counter() - start
    for conn in idle:
        conn.close()
    return tally, elapsed


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (Linux), to express cost per event whatever else runs."""
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(args: argparse.Namespace, port: int, pids: dict[str, int | None]) -> None:
    host = "127.0.0.1"
    bodies = make_bodies(args.bodies, args.batch_min, args.batch_max)
    payloads = [(request_bytes(host, body), events) for body, events in bodies]
    settle_heap()  # the generator's own GC pauses would count as collector latency
    mean_batch = statistics.mean(events for _, events in payloads)
    print(f"batches of {args.batch_min}-{args.batch_max} events (mean {mean_batch:.1f})")

    await saturate(host, port, payloads, args.connections, 2.0)  # warm-up: JIT-less, but caches and Kafka
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    tally, elapsed = await saturate(host, port, payloads, args.connections, args.seconds)
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    saturated_rps = tally.statuses.get(202, 0) / elapsed
    print(
        f"\nsaturation, {args.connections} connections, {elapsed:.1f} s: "
        f"{tally.events / elapsed:,.0f} events/s accepted ({saturated_rps:,.0f} requests/s), "
        f"p50 {tally.pct(0.5):.1f} ms, p99 {tally.pct(0.99):.1f} ms, non-202: {tally.refused}"
    )
    for name, seconds in cpu.items():
        print(
            f"  {name}: {seconds / elapsed:.2f} CPU cores busy, "
            f"{seconds / max(tally.events, 1) * 1e6:.1f} us CPU per accepted event"
        )

    print("\nopen-loop rate steps (latency from the scheduled send time):")
    print(f"{'offered req/s':>14} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'503s':>6} {'unsent':>7}")
    shedding_at = None
    rates = args.rates or [max(1.0, saturated_rps * f) for f in (0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.2, 1.5)]
    for rate in rates:
        tally, elapsed = await open_loop(host, port, payloads, rate, args.step_seconds, args.max_connections)
        achieved = tally.statuses.get(202, 0) / elapsed
        sheds = tally.refused > 0.001 * tally.requests or achieved < 0.95 * rate
        if sheds and shedding_at is None:
            shedding_at = rate
        print(
            f"{rate:>14,.0f} {tally.events / elapsed:>10,.0f} {tally.pct(0.5):>8.1f} {tally.pct(0.99):>8.1f} "
            f"{tally.statuses.get(503, 0):>6} {tally.errors:>7}{'  <- sheds' if sheds else ''}"
        )
        await asyncio.sleep(1.0)  # let the backlog drain between steps
    where = f"{shedding_at:,.0f} requests/s" if shedding_at else "not at the rates tried"
    print(f"\nstarts shedding load at: {where}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the saturation run")
    parser.add_argument("--step-seconds", type=float, default=5.0, help="length of each open-loop step")
    parser.add_argument("--connections", type=int, default=32, help="clients in the saturation run")
    parser.add_argument("--max-connections", type=int, default=512, help="open-loop connection limit")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(r) for r in text.split(",")],
        help="open-loop request rates, comma-separated (default: 20 %% to 150 %% of the saturated rate)",
    )
    parser.add_argument("--logs", help="keep the collector's log in this folder")
    parser.add_argument(
        "--stack-dir",
        help="where the broker's log and Redis's files go (default: the temporary folder, on disk "
        "here); /dev/shm keeps the co-located broker's disk writeback out of the collector's figures",
    )
    parser.add_argument("--batch-min", type=int, default=10)
    parser.add_argument("--batch-max", type=int, default=20)
    parser.add_argument("--bodies", type=int, default=2000, help="distinct pre-encoded batches")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="bench-collector-", dir=args.stack_dir) as scratch,
        LocalStack(settings=Settings(environment="test"), data_dir=Path(scratch) / "stack") as stack,
    ):
        logs = args.logs or scratch
        Path(logs).mkdir(parents=True, exist_ok=True)
        settings = stack.service_settings().model_copy(
            update={
                "collector_port": free_port(),
                "sites": (SiteConfig(id=SITE, origins=("https://shop.example",)),),
                # One load generator stands for many visitors: all of them share 127.0.0.0/24.
                "rate_limit_per_second": 0.0,
            }
        )
        collector = ServiceProcess("collector", settings, Path(logs))
        collector.start(timeout=90)
        try:
            pids = {
                "collector": collector.process.pid,
                "kafka broker": stack.kafka.pid if stack.kafka else None,
            }
            pids["load generator"] = os.getpid()
            asyncio.run(run(args, settings.collector_port, pids))
        finally:
            collector.stop()


if __name__ == "__main__":
    main()
