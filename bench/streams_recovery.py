"""Table recovery time: how long a worker takes to rebuild its ``visitors`` table from the changelog.

For each size in ``--visitors``, writes that many visitor states (the bytes the worker
itself writes: typical profiles with an open session, about 2 KB each) to the table's
changelog topic of a fresh app id, then starts one worker (``python -m tracker worker``,
``TRACKER_WORKER_STORE`` as configured, default ``memory://``) and reports, from its log:

- recovery: "Restoring state from changelog topics" to "Done reading from changelog topics";
- start to ready: process start to "Worker ready" (includes joining the group);
- with ``--store rocksdb://``, also a second start on the same local files (a restart:
  only the changelog written since is read);

and, as the baseline in the same run, the same with an empty changelog. A worker that
restarts with a memory store always replays its partitions' whole (compacted) changelog;
with standby replicas (``table_standby_replicas``, Faust's default 1) a second worker keeps
a warm copy, so a failover replays only the tail.

    .venv/bin/python bench/streams_recovery.py                        # 10,000 and 100,000 visitors
    .venv/bin/python bench/streams_recovery.py --visitors 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from tracker.devstack.process import free_port
from tracker.devstack.services import ServiceProcess
from tracker.models.visitor_state import VisitorState
from tracker.schema import TrackedEvent, partition_key
from tracker.settings import Settings
from tracker.streams.control import key_partition
from tracker.streams.visitors import profile_config

PARTITIONS = 4
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def templates(site: str, count: int = 40) -> list[dict]:
    """Typical visitor states (folded by the worker's own code) to copy under many ids."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from streams_profile_size import visitor_events

    rng = random.Random(3)
    config = profile_config(Settings())
    states = []
    for _ in range(count):
        events = visitor_events(site, rng, visits=rng.randrange(1, 4), per_visit=(4, 20))
        state = None
        for offset, event in enumerate(events):
            record = TrackedEvent.model_validate(
                {"event": event, "server": {"received_at": int(time.time() * 1000)}}
            )
            state = state or VisitorState.new(site, record.event.visitor_id)
            state.apply(record, partition=0, offset=offset, config=config)
        states.append(orjson.loads(state.to_bytes()))
    return states


async def write_changelog(bootstrap: str, topic: str, site: str, visitors: int) -> int:
    shapes = templates(site)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    written = 0
    try:
        futures = []
        for n in range(visitors):
            visitor = f"rv-{n:010d}"
            key = partition_key(site, visitor)
            partition = key_partition(key, PARTITIONS)
            state = dict(shapes[n % len(shapes)])
            state["visitor"] = visitor
            state["at"] = [partition, n]
            state["p"] = {**state["p"], "visitor": visitor}
            value = orjson.dumps(state)
            written += len(value)
            futures.append(await producer.send(topic, key=key, value=value, partition=partition))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return written


def timing(recovery: float, ready: float) -> str:
    return f"recovery {recovery:6.2f} s   start to ready {ready:6.2f} s"


def log_time(line: str) -> float:
    match = LOG_TIME.match(line)
    assert match, line
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def run_worker(
    bootstrap: str, redis_url: str, app_id: str, names: dict[str, str], logs: Path, store: str, run: int = 1
) -> tuple[float, float]:
    settings = Settings(
        kafka_bootstrap=bootstrap,
        redis_url=redis_url,
        worker_app_id=app_id,
        worker_store=store,
        worker_data_dir=logs / "data",
        topic_events=names["events"],
        topic_sessions=names["sessions"],
        topic_erasures=names["erasures"],
        topic_partitions=PARTITIONS,
        worker_web_port=free_port(),
    )
    worker = ServiceProcess("worker", settings, logs / f"{app_id}-{run}")
    started = time.time()
    worker.start(timeout=900)
    log_path = logs / f"{app_id}-{run}" / "worker.log"
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            lines = log_path.read_text(errors="replace").splitlines()
            ready = [line for line in lines if "Worker ready" in line]
            if ready:
                begin = [line for line in lines if "Restoring state from changelog topics" in line]
                done = [line for line in lines if "Done reading from changelog topics" in line]
                recovery = log_time(done[0]) - log_time(begin[0]) if begin and done else 0.0
                return recovery, log_time(ready[0]) - started
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready after 15 minutes; see {log_path}")
    finally:
        worker.stop()


def run(args: argparse.Namespace, bootstrap: str, redis_url: str, logs: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    names = {k: f"bench-{tag}-{k}" for k in ("events", "sessions", "erasures")}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names.values()])
    site = f"rec-{tag}"
    print(f"store {args.store}, {PARTITIONS} partitions, one worker")
    base_recovery, base_ready = run_worker(
        bootstrap, redis_url, f"bench-{tag}-empty", names, logs, args.store
    )
    print(f"{'empty table (baseline)':>28}: {timing(base_recovery, base_ready)}")
    for count in args.visitors:
        app_id = f"bench-{tag}-{count}"
        changelog = f"{app_id}-visitors-changelog"
        admin.create_topics([NewTopic(changelog, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})])
        size = asyncio.run(write_changelog(bootstrap, changelog, site, count))
        recovery, ready = run_worker(bootstrap, redis_url, app_id, names, logs, args.store)
        rate = count / recovery if recovery else float("inf")
        print(
            f"{count:>14,} visitors ({size / 1e6:5.0f} MB): recovery {recovery:6.2f} s "
            f"({rate:,.0f} keys/s)   start to ready {ready:6.2f} s"
        )
        if args.store.startswith("rocksdb"):
            recovery, ready = run_worker(bootstrap, redis_url, app_id, names, logs, args.store, run=2)
            print(f"{'... restarted, local state':>28}: {timing(recovery, ready)}")
    admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--visitors",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10_000, 100_000],
        help="comma-separated table sizes",
    )
    parser.add_argument("--store", default="memory://", help="TRACKER_WORKER_STORE")
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
