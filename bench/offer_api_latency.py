"""Offer API latency at fixed request rates (p50/p99/p99.9) and its saturation throughput.

By default it starts the full local stack (Kafka, Redis, stream worker, collector,
offer API as separate processes, exactly as ``tracker up`` does), stores 10,000
visitor profiles (70 % with interests, 30 % never seen), publishes a click model
trained on made-up rewards (as the trainer publishes one in production; ``--untrained``
leaves the API with the untrained model), then:

1. baselines in the same run: a bare Redis ``GET`` round trip (``redis-benchmark``,
   one client) and the offer API's ``/healthz`` (HTTP stack + load generator, no
   Redis, no decision) at each rate;
2. ``GET /v1/offers`` for random visitors at each fixed rate (open loop);
3. saturation: closed loop with ``--saturation-connections`` connections.

The load generator runs in a separate process (this file, ``loadgen`` mode). It
is open loop and coordinated-omission safe: request *i* is due at
``start + i / rate`` and its latency is measured from that due time, so a
stalled server is charged for the requests that queue up behind it, not only
for the one it is slow on. Connections are HTTP/1.1 keep-alive; a request
waits for a free connection when all are busy (and that wait counts).
``--loadgen vegeta`` paces and sends the fixed-rate runs with vegeta (Go) instead,
latencies again from each request's due time: a cross-check that this file's own
load generator (Python, on the same two cores) does not make the figures.

    .venv/bin/python bench/offer_api_latency.py                 # full run (about 4 minutes)
    .venv/bin/python bench/offer_api_latency.py --rates 1000 --duration 10
    .venv/bin/python bench/offer_api_latency.py --api-workers 2   # two API processes on its port
    .venv/bin/python bench/offer_api_latency.py --api-workers 2 --api-priority 10 --redis-priority 10
        # the API, the load generators and Redis ahead of Kafka and the stream worker for the CPU,
        # as on machines of their own (root)
    .venv/bin/python bench/offer_api_latency.py --loadgen vegeta  # vegeta sends (built with Go)
    .venv/bin/python bench/offer_api_latency.py --rates 1000 --api-workers 2 --realtime 10
        # diagnostic: the API, Redis and the load generators at real-time priority (root), so
        # that the tail left is the API's own and none of it waiting for a CPU
    .venv/bin/python bench/offer_api_latency.py --api-url http://127.0.0.1:8002 \\
        --redis-url redis://127.0.0.1:6379/0                     # against running services

Each fixed-rate run also reports how many offer requests took over 5 ms inside the API, and how
many of its Redis reads did (the API's own histograms, scraped before and after the run); how
late the load generator sent its requests (a part of every latency, since latencies run from
the due time); the CPU time the hypervisor gave other guests (``stolen``: a run that lost much
measured a slower machine); and, second by second, the requests over 5 ms (bursts point to a
stall somewhere, an even spread to queueing for the CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SITE = "bench"
SLOT = "home-hero"
CATEGORIES = ["shoes", "outdoor", "kitchen", "books", "electronics", "garden"]
# A request slower than this (the goal's p99) is reported by the second it was due in.
SLOW_SECONDS = 0.005


# --------------------------------------------------------------------------- load generator


class Connection:
    """One keep-alive HTTP/1.1 connection; just enough HTTP for uvicorn's answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: bytes) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    async def get(self, path: bytes) -> int:
        self.writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: " + self.host + b"\r\n\r\n")
        head = await self.reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        start = lower.index(b"content-length:") + 15
        length = int(head[start : lower.index(b"\r\n", start)])
        await self.reader.readexactly(length)
        return int(head[9:12])


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max in milliseconds (nearest-rank)."""
    if not latencies:
        return {}
    ordered = sorted(latencies)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))] * 1000

    return {
        "p50_ms": rank(0.50),
        "p90_ms": rank(0.90),
        "p99_ms": rank(0.99),
        "p99.9_ms": rank(0.999),
        "max_ms": ordered[-1] * 1000,
    }


def request_paths(kind: str, visitors: int, seed: int, count: int) -> list[bytes]:
    if kind != "offers":
        return [f"/{kind}".encode()]
    rng = random.Random(seed)
    return [
        f"/v1/offers?site={SITE}&visitor=bench-{rng.randrange(visitors):08d}&slot={SLOT}".encode()
        for _ in range(count)
    ]


async def open_loop(args: argparse.Namespace) -> dict[str, Any]:
    clock = time.perf_counter
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    conns = [Connection(*await asyncio.open_connection(host, port), f"{host}:{port}".encode())]
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    idle.put_nowait(conns[0])
    paths = request_paths(args.kind, args.visitors, args.seed, 65_536)
    times = OpenLoopTimes()
    pending: set[asyncio.Task[None]] = set()

    async def connection() -> Connection:
        # Open more connections on demand, up to the cap, so that slow answers do not serialise.
        if idle.empty() and len(conns) < args.connections:
            conns.append(Connection(*await asyncio.open_connection(host, port), f"{host}:{port}".encode()))
            return conns[-1]
        return await idle.get()

    async def fire(due: float, path: bytes, measured: bool) -> None:
        conn = await connection()
        sent = clock()
        try:
            status = await conn.get(path)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            return  # the connection is dropped; the request counts as never answered
        idle.put_nowait(conn)
        if measured:
            times.answered(due - measure_from, sent - due, clock() - due, status)

    # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
    start = clock() + 0.05
    measure_from = start + args.warmup
    end = measure_from + args.duration
    i = 0
    while True:
        due = start + i / args.rate
        if due >= end:
            break
        now = clock()
        if due > now:
            await asyncio.sleep(due - now)
        task = asyncio.create_task(fire(due, paths[i % len(paths)], due >= measure_from))
        pending.add(task)
        task.add_done_callback(pending.discard)
        i += 1
    if pending:
        await asyncio.wait(pending, timeout=30)
    for conn in conns:
        conn.writer.close()
    sent = sum(1 for k in range(i) if start + k / args.rate >= measure_from)
    return times.result(args, sent=sent, connections=len(conns))


@dataclass
class OpenLoopTimes:
    """What an open-loop run measured of the requests that got an answer, each from its due time."""

    latencies: list[float] = field(default_factory=list)
    # How late each request left the load generator (its own timer and CPU waits, a free
    # connection): part of every latency, since latencies run from the due time.
    send_delays: list[float] = field(default_factory=list)
    slow_at: list[tuple[float, float]] = field(default_factory=list)  # (seconds into the run, latency)
    not_ok: int = 0  # answers other than 200

    def answered(self, at: float, late: float, latency: float, status: int) -> None:
        self.latencies.append(latency)
        self.send_delays.append(late)
        if latency > SLOW_SECONDS:
            self.slow_at.append((at, latency))
        if status != 200:
            self.not_ok += 1

    def result(self, args: argparse.Namespace, *, sent: int, connections: int) -> dict[str, Any]:
        """The run's figures; ``errors`` counts answers other than 200 and requests never answered."""
        return {
            "mode": "open",
            "kind": args.kind,
            "rate": args.rate,
            "duration_s": args.duration,
            "requests": sent,
            "completed": len(self.latencies),
            "errors": self.not_ok + (sent - len(self.latencies)),
            "connections": connections,
            **percentiles(self.latencies),
            "send_delay": percentiles(self.send_delays),
            "slow_by_second": slow_by_second(self.slow_at),
        }


def slow_by_second(slow_at: list[tuple[float, float]]) -> list[list[float]]:
    """``[second, requests over SLOW_SECONDS, worst ms]`` for each second of a run that had any:
    whether slow requests come in bursts (a stall somewhere) or spread evenly (queueing)."""
    seconds: dict[int, list[float]] = {}
    for at, latency in slow_at:
        seconds.setdefault(int(at), []).append(latency)
    return [[second, len(found), round(max(found) * 1000, 1)] for second, found in sorted(seconds.items())]


async def closed_loop(args: argparse.Namespace) -> dict[str, Any]:
    clock = time.perf_counter
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    paths = request_paths(args.kind, args.visitors, args.seed, 65_536)
    latencies: list[float] = []
    errors = 0
    start = clock() + args.warmup
    end = start + args.duration

    async def worker(offset: int) -> None:
        nonlocal errors
        conn = Connection(*await asyncio.open_connection(host, port), f"{host}:{port}".encode())
        i = offset
        while (now := clock()) < end:
            status = await conn.get(paths[i % len(paths)])
            i += args.connections
            if now >= start:
                latencies.append(clock() - now)
                errors += status != 200
        conn.writer.close()

    await asyncio.gather(*(worker(k) for k in range(args.connections)))
    return {
        "mode": "closed",
        "kind": args.kind,
        "connections": args.connections,
        "duration_s": args.duration,
        "completed": len(latencies),
        "errors": errors,
        "throughput_rps": len(latencies) / args.duration,
        **percentiles(latencies),
    }


# vegeta (Go, https://github.com/tsenart/vegeta): the open loop without this file's Python in it.
VEGETA_MODULE = "github.com/tsenart/vegeta/v12@v12.12.0"


def vegeta_binary() -> str:
    """vegeta on the PATH, or built once with the machine's Go into ``var/tools`` (``--loadgen
    vegeta`` only: the default load generator needs nothing but Python)."""
    found = shutil.which("vegeta")
    if found:
        return found
    tools = Path(__file__).resolve().parents[1] / "var" / "tools" / "go"
    binary = tools / "bin" / "vegeta"
    if not binary.exists():
        go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
        if go is None:
            raise SystemExit("--loadgen vegeta needs vegeta on the PATH, or Go to build it (go install)")
        print(f"building vegeta ({VEGETA_MODULE}) with {go} ...", file=sys.stderr)
        env = {**os.environ, "GOPATH": str(tools), "GOBIN": str(tools / "bin")}
        subprocess.run([go, "install", VEGETA_MODULE], env=env, check=True, timeout=600)
    return str(binary)


def vegeta_open_loop(args: argparse.Namespace) -> dict[str, Any]:
    """The open loop of :func:`open_loop`, paced and sent by vegeta. Latencies still run from
    each request's due time: vegeta reports when it began each request (``seq``-th, due at
    ``start + seq / rate``) and how long the answer took; the two add up."""
    base = args.url.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="bench-vegeta-") as scratch:
        targets, results = Path(scratch) / "targets.txt", Path(scratch) / "results.bin"
        paths = request_paths(args.kind, args.visitors, args.seed, 65_536)
        targets.write_text("".join(f"GET {base}{path.decode()}\n\n" for path in paths))
        binary = vegeta_binary()
        seconds = args.warmup + args.duration
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [binary, "attack", f"-rate={args.rate:g}/1s", f"-duration={seconds:g}s", f"-targets={targets}",
             "-keepalive=true", f"-workers={min(args.connections, 16)}", f"-max-workers={args.connections}",
             "-timeout=30s", f"-output={results}"],
            check=True,
        )  # fmt: skip
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        rows = subprocess.run(
            [binary, "encode", "-to=csv", str(results)], check=True, capture_output=True, text=True
        ).stdout.splitlines()
    # Columns: timestamp (ns), status (0: no answer), latency (ns), bytes out, bytes in, error,
    # body, name, seq, ...
    parsed = [(int(f[8]), int(f[0]), int(f[1]), int(f[2])) for f in csv.reader(rows)]
    parsed.sort()
    start_ns = parsed[0][1] if parsed else 0
    times = OpenLoopTimes()
    measured_from = int(args.warmup * args.rate)
    sent = 0  # vegeta sends every request, however late
    for seq, began_ns, status, latency_ns in parsed:
        if seq < measured_from:
            continue
        sent += 1
        if status == 0:
            continue  # no answer (vegeta's error says why): counted as never answered
        due_ns = start_ns + seq * 1e9 / args.rate
        late = max(0.0, (began_ns - due_ns) / 1e9)
        times.answered((due_ns - start_ns) / 1e9 - args.warmup, late, late + latency_ns / 1e9, status)
    return {
        **times.result(args, sent=sent, connections=args.connections),
        "engine": "vegeta",
        # The attack's own share of a core (decoding its results afterwards is not load).
        "loadgen_cpu_percent": round(
            100 * (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / seconds
        ),
    }


def loadgen_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="offer_api_latency.py loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--kind", default="offers", help="offers, or a fixed path such as healthz")
    parser.add_argument("--mode", choices=["open", "closed"], default="open")
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--visitors", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--engine", choices=["python", "vegeta"], default="python")
    args = parser.parse_args(argv)
    if args.engine == "vegeta" and args.mode == "open":
        print(json.dumps(vegeta_open_loop(args)))
        return
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    result = runner(open_loop(args) if args.mode == "open" else closed_loop(args))
    print(json.dumps(result))


# --------------------------------------------------------------------------- driver


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the offer API's worker processes), from Linux /proc."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            pending += [int(child) for child in task.read_text().split()]
    return tree


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time so far of a process and its descendants (Linux /proc)."""
    if pid is None:
        return None
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # exited since the tree was read
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def stolen_seconds() -> float:
    """CPU time the hypervisor gave to other guests while this machine's CPUs wanted it, so far
    (Linux /proc/stat, all CPUs): a run that lost much of it measured a slower machine."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def run_loadgen(url: str, pids: dict[str, int] | None = None, **options: Any) -> dict[str, Any]:
    """One load-generator process; adds each process's share of a core over the run (``pids`` by
    name, and the load generator's own), and the API's CPU time per request when ``pids`` has it."""
    argv = [sys.executable, __file__, "loadgen", "--url", url]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    pids = pids or {}
    api_pid = pids.get("api")
    before = cpu_seconds(api_pid)
    processes_before = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    stolen_before = stolen_seconds()
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    wall = time.monotonic() - started
    result = json.loads(out.stdout.strip().splitlines()[-1])
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    shares = {
        name: round(100 * ((cpu_seconds(pids[name]) or 0.0) - spent) / wall)
        for name, spent in processes_before.items()
    }
    loadgen = children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
    shares["loadgen"] = result.pop("loadgen_cpu_percent", None) or round(100 * loadgen / wall)
    result["cpu_percent"] = shares
    result["stolen_percent"] = round(100 * (stolen_seconds() - stolen_before) / wall, 1)
    if before is not None:
        spent = cpu_seconds(api_pid) - before  # warm-up included: an upper bound per request
        total = result.get("requests") or result["completed"]
        result["api_cpu_us_per_request"] = (
            spent / max(1, total + options.get("warmup", 0) * options.get("rate", 0)) * 1e6
        )
    return result


def bench_profiles(visitors: int, settings: Any) -> dict[str, Any]:
    """Profiles for 70 % of ``visitors`` (``bench-<n>``), as the stream worker would have built
    them from 1-11 product views and cart adds each; by visitor id."""
    from tracker.models.profile import Profile, apply_event
    from tracker.schema import parse_event

    rng = random.Random(1)
    now = int(time.time() * 1000)
    profiles = {}
    for n in range(visitors):
        if rng.random() >= 0.7:
            continue
        visitor = f"bench-{n:08d}"
        profile = Profile.new(SITE, visitor)
        for k in range(rng.randrange(1, 12)):
            event = parse_event(
                {
                    "event_id": str(uuid.uuid4()),
                    "type": rng.choice(["product_view", "product_view", "add_to_cart"]),
                    "ts": now - rng.randrange(0, 3_600_000),
                    "site_id": SITE,
                    "visitor_id": visitor,
                    "product_id": f"sku-{k}",
                    "category": rng.choice(CATEGORIES),
                }
            )
            apply_event(
                profile,
                event,
                received_at=now,
                half_life_seconds=settings.interest_half_life_seconds,
                dedupe_window=settings.dedupe_window,
            )
        profiles[visitor] = profile
    return profiles


def seed_profiles(redis_url: str, visitors: int, settings: Any) -> list[Any]:
    """Store :func:`bench_profiles` in Redis; returns them."""
    import orjson
    import redis

    from tracker import keys

    profiles = bench_profiles(visitors, settings)
    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline(transaction=False)
    for visitor, profile in profiles.items():
        pipe.set(keys.profile(SITE, visitor), orjson.dumps(profile.to_dict()), ex=3600)
        if len(pipe) >= 1000:
            pipe.execute()
    pipe.execute()
    client.close()
    return list(profiles.values())


def train_click_model(catalogue: Any, profiles: list[Any], settings: Any) -> Any:
    """A click model trained on 5,000 made-up rewards of these visitors (4 % clicked), deciding
    as the policy does: what the trainer would have published after a while."""
    from tracker.models.features import context_from_profile
    from tracker.models.learner import ClickModel
    from tracker.models.policy import PolicyConfig, decide

    model = ClickModel(learning_rate=settings.model_learning_rate)
    config = PolicyConfig.from_settings(settings)
    rng = random.Random(5)
    now = int(time.time() * 1000)
    for n in range(5000):
        profile = profiles[n % len(profiles)] if profiles and rng.random() < 0.7 else None
        ctx = context_from_profile(profile, now_ms=now, half_life_seconds=settings.interest_half_life_seconds)
        decision = decide(
            catalogue, SLOT, ctx, model=model, rng=rng, site_id=SITE, visitor_id=f"train-{n}",
            config=config, now_ms=now,
        )  # fmt: skip
        if decision.offer is not None and not decision.holdout:
            model.learn_one(decision.features, rng.random() < 0.04, offer_id=decision.offer.id)
    return model


def publish_trained_model(redis_url: str, app_id: str, profiles: list[Any], settings: Any) -> str:
    """Publish :func:`train_click_model` as the stream worker's trainer does; returns its version.
    The API then decides as in production, with a trained model (an untrained one, which the
    benchmark otherwise gets since nothing is ever clicked, decides twice for a visitor it knows
    nothing about: ``tracker.serve.offers._cold_default``)."""
    import redis

    from tracker import keys
    from tracker.models.catalogue import load_catalogue
    from tracker.models.learner import encode_snapshot

    model = train_click_model(load_catalogue(settings.catalogue_path), profiles, settings)
    snapshot = model.to_snapshot(
        created_ms=int(time.time() * 1000), meta={"worker": app_id, "source": "offer_api_latency"}
    )
    version = str(snapshot["version"])
    client = redis.Redis.from_url(redis_url)
    client.set(keys.click_model(app_id, version), encode_snapshot(snapshot), ex=3600)
    client.set(keys.click_model_current(app_id), version)
    client.close()
    return version


def wait_for_model(api_url: str, version: str, timeout: float = 60.0) -> None:
    """Until twenty answers in a row (every API process's, on new connections) name ``version``."""
    import httpx

    deadline = time.monotonic() + timeout
    in_a_row = 0
    while in_a_row < 20:
        if time.monotonic() > deadline:
            raise SystemExit(
                f"the offer API did not load the published click model {version} in {timeout:g} s "
                "(is its worker app id TRACKER_WORKER_APP_ID? --untrained skips the model)"
            )
        body = httpx.get(
            f"{api_url}/v1/offers", params={"site": SITE, "visitor": "bench-00000000", "slot": SLOT}
        ).json()
        in_a_row = in_a_row + 1 if body["model_version"] == version else 0
        if not in_a_row:
            time.sleep(0.2)


def redis_baseline(redis_url: str) -> dict[str, Any] | None:
    """A bare GET round trip, one client, no pipelining (``redis-benchmark``)."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    url = urlsplit(redis_url)
    argv = [binary, "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379)]
    argv += ["-t", "get", "-n", "50000", "-c", "1", "-P", "1", "--csv"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    rows = [line.replace('"', "").split(",") for line in out.strip().splitlines()]
    header, values = rows[0], rows[-1]
    return dict(zip(header, values, strict=False))


def scrape(api_url: str) -> dict[str, float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{api_url}/metrics", timeout=5).text
    wanted = (
        "tracker_offer_requests_total",
        "tracker_offer_decisions_dropped_total",
        "tracker_offer_decisions_sent_total",
    )
    # Server-side tails: offer requests and Redis round trips within 5 ms, and all of them.
    buckets = (
        "tracker_offer_redis_duration_seconds_bucket",
        "tracker_offer_http_request_duration_seconds_bucket",
    )
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in buckets and sample.labels.get("handler", "/v1/offers") == "/v1/offers":
                if sample.labels["le"] in ("0.005", "+Inf"):
                    values[f"{sample.name}{{le={sample.labels['le']}}}"] = sample.value
            elif sample.name in wanted:
                label = ",".join(f"{v}" for v in sample.labels.values())
                values[f"{sample.name}{{{label}}}" if label else sample.name] = sample.value
    return values


@contextmanager
def full_stack(api_workers: int = 1) -> Iterator[tuple[str, str, dict[str, int], str]]:
    """Kafka, Redis and every service as separate processes; yields (api_url, redis_url, pids by
    name, the worker's app id)."""
    from tracker.devstack.services import SERVICES, ServiceProcess, on_free_ports
    from tracker.devstack.stack import LocalStack
    from tracker.settings import Settings

    log_dir = Path(tempfile.mkdtemp(prefix="bench-offer-api-"))
    with ExitStack() as stack:
        local = stack.enter_context(LocalStack(settings=Settings(environment="development")))
        settings = on_free_ports(local.service_settings(), app="bench").model_copy(
            update={"api_workers": api_workers}
        )
        pids = {"kafka": local.kafka.pid, "redis": local.redis.pid}
        for name in SERVICES:
            service = ServiceProcess(name, settings, log_dir)
            service.start(timeout=120)
            stack.callback(service.stop)
            pids[name] = service.process.pid
        yield (
            f"http://{settings.api_host}:{settings.api_port}",
            local.redis_url,
            {name: pid for name, pid in pids.items() if pid is not None},
            settings.worker_app_id,
        )


def machine() -> str:
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{cpus} CPUs, {mem:.0f} GiB, Python {sys.version.split()[0]}, load average {load}"


def shares(result: dict[str, Any]) -> str:
    """Each process's share of a core over one run, largest first, and what the hypervisor took:
    ``api 74, kafka 40, ..., stolen 0.3``."""
    cpu = result.get("cpu_percent") or {}
    text = ", ".join(f"{name} {percent}" for name, percent in sorted(cpu.items(), key=lambda kv: -kv[1]))
    return f"{text}, stolen {result['stolen_percent']}" if "stolen_percent" in result else text


def over_5ms(before: dict[str, float], after: dict[str, float]) -> dict[str, str]:
    """Offer requests (as the API timed them, warm-up included) and Redis round trips that took
    over 5 ms between two scrapes: ``{"offers": "12 of 18,000", "redis": ...}``."""

    def share(metric: str) -> str:
        name = f"tracker_offer_{metric}_duration_seconds_bucket"
        delta = {
            le: after.get(f"{name}{{le={le}}}", 0) - before.get(f"{name}{{le={le}}}", 0)
            for le in ("0.005", "+Inf")
        }
        return f"{delta['+Inf'] - delta['0.005']:,.0f} of {delta['+Inf']:,.0f}"

    return {"offers": share("http_request"), "redis": share("redis")}


def fmt(result: dict[str, Any]) -> str:
    return " | ".join(
        f"{result.get(k, float('nan')):.2f}" for k in ("p50_ms", "p99_ms", "p99.9_ms", "max_ms")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="500,1000,2000", help="comma-separated requests per second")
    parser.add_argument("--duration", type=float, default=20, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds before each run")
    parser.add_argument(
        "--stack-warmup",
        type=float,
        default=60,
        help="unmeasured seconds of offer requests at 1,000/s before the first run: a fresh Kafka "
        "broker spends its first minute compiling itself (JIT), which a long-running one does not",
    )
    parser.add_argument("--visitors", type=int, default=10_000)
    parser.add_argument("--saturation-connections", type=int, default=32)
    parser.add_argument("--api-url", help="an offer API already running (then also --redis-url)")
    parser.add_argument("--redis-url")
    parser.add_argument(
        "--api-pid", type=int, help="pid of that API (or its workers' parent): its CPU time per request"
    )
    parser.add_argument(
        "--api-workers", type=int, default=1, help="offer API processes on its port (TRACKER_API_WORKERS)"
    )
    parser.add_argument(
        "--untrained",
        action="store_true",
        help="leave the API with the untrained click model (by default a model trained on made-up "
        "rewards is published first, as the trainer publishes one in production)",
    )
    parser.add_argument(
        "--loadgen",
        choices=["python", "vegeta"],
        default="python",
        help="the fixed-rate load generator: this file's asyncio one, or vegeta (Go; built with the "
        "machine's Go into var/tools when not on the PATH), a cross-check of the first",
    )
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    parser.add_argument(
        "--realtime",
        type=int,
        default=0,
        help="diagnostic: run every thread of the API, Redis and the load generators under SCHED_RR at "
        "this real-time priority (root), so that none waits for a CPU behind Kafka, the worker or the "
        "collector; what tail is left is the API's own. Only for rates well below saturation: at "
        "2,000/s on 2 cores the real-time processes starved the rest and requests queued for seconds "
        "(docs/BENCHMARKS.md), and the saturation figure is lower",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the benchmark's processes (and --api-pid) at this niceness; -10 (root) shields "
        "the measurement from other jobs on a shared machine",
    )
    parser.add_argument(
        "--api-priority",
        type=int,
        default=0,
        help="run the offer API (and the load generators, standing for clients elsewhere) this many "
        "niceness steps above the rest of the stack (root for > 0): the stream worker, Kafka and Redis "
        "then take what CPU the API leaves, as on separate machines",
    )
    parser.add_argument(
        "--redis-priority",
        type=int,
        default=0,
        help="run Redis this many niceness steps above the rest of the stack (root for > 0): the "
        "API's one round trip per request then does not wait behind Kafka and the stream worker, "
        "as with a Redis of its own",
    )
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]
    if args.nice:
        os.nice(args.nice)  # children (stack, services, load generators) inherit it
        for pid in process_tree(args.api_pid) if args.api_pid else []:
            os.setpriority(os.PRIO_PROCESS, pid, args.nice)

    from tracker.settings import Settings

    with ExitStack() as stack:
        if args.api_url:
            if not args.redis_url:
                parser.error("--api-url needs --redis-url (to store the benchmark's profiles)")
            api_url, redis_url = args.api_url.rstrip("/"), args.redis_url
            pids = {"api": args.api_pid} if args.api_pid else {}
            app_id = Settings().worker_app_id
        else:
            print("starting Kafka, Redis, worker, collector and offer API ...", file=sys.stderr)
            api_url, redis_url, pids, app_id = stack.enter_context(full_stack(args.api_workers))
        api_pid = pids.get("api")
        stack_niceness = os.getpriority(os.PRIO_PROCESS, 0)
        if args.api_priority and api_pid:
            # As a deployment gives the API CPU of its own (Kubernetes requests, a node of its
            # own): here, a higher priority than the stream worker, Kafka and Redis on the same cores.
            # The load generators (started from here from now on) stand for browsers on other
            # machines: they get the same priority, so that their own waits for a CPU behind the
            # stack are not charged to the API.
            raised = os.getpriority(os.PRIO_PROCESS, 0) - args.api_priority
            for pid in process_tree(api_pid):  # its workers too (a replacement inherits it)
                os.setpriority(os.PRIO_PROCESS, pid, raised)
            os.setpriority(os.PRIO_PROCESS, 0, raised)
        if args.redis_priority and pids.get("redis"):
            os.setpriority(os.PRIO_PROCESS, pids["redis"], stack_niceness - args.redis_priority)
        if args.realtime:
            # Every thread (librdkafka's, uvloop's), and this process so that the load generators
            # it starts inherit the policy.
            for pid in [*(process_tree(api_pid) if api_pid else []), pids.get("redis"), os.getpid()]:
                for task in Path(f"/proc/{pid}/task").iterdir() if pid else []:
                    os.sched_setscheduler(int(task.name), os.SCHED_RR, os.sched_param(args.realtime))
        api_niceness = os.getpriority(os.PRIO_PROCESS, api_pid) if api_pid else None
        profiles = seed_profiles(redis_url, args.visitors, Settings())
        model_version = None
        if not args.untrained:
            model_version = publish_trained_model(redis_url, app_id, profiles, Settings())
            wait_for_model(api_url, model_version)
        common = {
            "duration": args.duration,
            "warmup": args.warmup,
            "visitors": args.visitors,
            "engine": args.loadgen,  # the fixed-rate runs (saturation is this file's closed loop)
        }
        results: dict[str, Any] = {
            "machine": machine(),
            "api_workers": None if args.api_url else args.api_workers,
            "api_niceness": api_niceness,
            "redis_niceness": os.getpriority(os.PRIO_PROCESS, pids["redis"]) if pids.get("redis") else None,
            "redis_get": redis_baseline(redis_url),
            "stack_warmup_seconds": args.stack_warmup,
            "model_version": model_version,
            "runs": [],
        }
        if args.stack_warmup > 0:
            print(
                f"warming the stack up: offers at 1,000 req/s for {args.stack_warmup:g} s ...",
                file=sys.stderr,
            )
            warm = run_loadgen(
                api_url,
                kind="offers",
                rate=1000,
                duration=args.stack_warmup,
                warmup=0,
                visitors=args.visitors,
                engine=args.loadgen,
            )
            results["stack_warmup"] = warm
        before = scrape(api_url)
        for rate in rates:
            for kind in ("healthz", "offers"):
                print(f"{kind} at {rate:.0f} req/s ...", file=sys.stderr)
                at_start = scrape(api_url)
                run = run_loadgen(api_url, pids, kind=kind, rate=rate, **common)
                run["server_over_5ms"] = over_5ms(at_start, scrape(api_url))
                results["runs"].append(run)
        print("saturation ...", file=sys.stderr)
        saturation = run_loadgen(
            api_url,
            pids,
            kind="offers",
            mode="closed",
            connections=args.saturation_connections,
            **common,
        )
        results["saturation"] = saturation
        after = scrape(api_url)
        results["api_counters"] = {k: after[k] - before.get(k, 0) for k in after}

    print(f"\nmachine at start: {results['machine']}; at end: {machine()}")
    print(
        f"offer API worker processes: {results['api_workers'] or 'n/a'}; "
        f"niceness: {results['api_niceness']} (load generators: "
        f"{os.getpriority(os.PRIO_PROCESS, 0)}, Redis: {results['redis_niceness']}, the rest of the stack: "
        f"{stack_niceness})"
    )
    print(f"click model: {results['model_version'] or 'untrained'}; load generator: {args.loadgen}")
    if results["redis_get"]:
        r = results["redis_get"]
        print(f"Redis GET round trip (redis-benchmark, 1 client): p50 {r.get('p50_latency_ms')} ms, "
              f"p99 {r.get('p99_latency_ms')} ms, {r.get('rps')} req/s")  # fmt: skip
    if "stack_warmup" in results:
        w = results["stack_warmup"]
        print(
            f"stack warm-up ({args.stack_warmup:g} s at 1,000 req/s, not measured): p99 {w['p99_ms']:.1f} ms"
        )
    print(
        "\n| rate (req/s) | endpoint | p50 ms | p99 ms | p99.9 ms | max ms | errors | API CPU/request "
        "| CPU, % of a core | over 5 ms in the API: offers; Redis reads | sent late p50 / p99 ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in results["runs"]:
        endpoint = "/healthz (baseline)" if run["kind"] == "healthz" else "/v1/offers"
        cpu = run.get("api_cpu_us_per_request")
        cpu_text = f"{cpu:.0f} µs" if cpu is not None else "n/a"
        slow = run["server_over_5ms"]
        slow_text = f"{slow['offers']}; {slow['redis']}" if run["kind"] == "offers" else ""
        late = run.get("send_delay") or {}
        late_text = f"{late.get('p50_ms', float('nan')):.2f} / {late.get('p99_ms', float('nan')):.2f}"
        print(
            f"| {run['rate']:.0f} | {endpoint} | {fmt(run)} | {run['errors']} | {cpu_text} | {shares(run)} "
            f"| {slow_text} | {late_text} |"
        )
    for run in results["runs"]:
        if run["kind"] == "offers" and run.get("slow_by_second"):
            bursts = ", ".join(f"{sec}s: {n} (max {worst:g} ms)" for sec, n, worst in run["slow_by_second"])
            print(f"offers at {run['rate']:.0f}/s over 5 ms, by second of the run: {bursts}")
    s = results["saturation"]
    print(
        f"\nsaturation ({s['connections']} connections, closed loop): {s['throughput_rps']:.0f} req/s, "
        f"p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, errors {s['errors']}; CPU {shares(s)}"
    )
    print("offer API counters during the run:", json.dumps(results["api_counters"], sort_keys=True))
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "loadgen":
        loadgen_main(sys.argv[2:])
    else:
        main()
