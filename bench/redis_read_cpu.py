"""The offer API's visitor read: CPU per read through redis-py's client against the lean path.

Starts a throwaway Redis on loopback, stores 1,000 visitors' profiles and frequency-cap
counts, then reads them with ``--readers`` concurrent tasks in this one process, alternating
the two ways each round:

- ``redis-py``: ``Redis.execute_command("MGET", profile, caps)`` on the API's client
  (:func:`tracker.serve.store.redis_client`), what the API did before;
- ``lean``: :meth:`tracker.serve.store.VisitorStore.read`, the API's read now
  (:mod:`tracker.serve.lean_redis`, plus the breaker, the timeout and the metrics around it).

Reports this process's CPU time per read (``time.process_time``), best of ``--rounds``:
the figure that the API's CPU per request is made of, free of what else runs on the machine.

Usage: ``.venv/bin/python bench/redis_read_cpu.py [--reads 20000] [--readers 8] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import uvloop

from tracker import keys
from tracker.devstack.redis_server import RedisServer
from tracker.serve.breaker import CircuitBreaker
from tracker.serve.metrics import OfferMetrics
from tracker.serve.store import VisitorStore, redis_client
from tracker.settings import Settings

SITE = "bench"
VISITORS = 1_000


async def timed(read: Callable[[str], Awaitable[object]], reads: int, readers: int) -> float:
    """CPU microseconds per read, ``readers`` tasks sharing ``reads``."""

    async def reader(offset: int) -> None:
        for i in range(offset, reads, readers):
            await read(f"visitor-{i % VISITORS:05d}")

    started = time.process_time()
    await asyncio.gather(*(reader(offset) for offset in range(readers)))
    return (time.process_time() - started) / reads * 1e6


async def run(redis_url: str, reads: int, readers: int, rounds: int) -> dict[str, float]:
    settings = Settings(redis_url=redis_url)
    client = redis_client(settings)
    for i in range(VISITORS):
        visitor = f"visitor-{i:05d}"
        profile = orjson.dumps({"v": 2, "interests": {"category:shoes": 1.5, "category:bags": 0.7}})
        await client.set(keys.profile(SITE, visitor), profile * 4)
        await client.set(keys.caps(SITE, visitor), orjson.dumps({"offer-a": [1, 2]}))
    store = VisitorStore(client, CircuitBreaker(failure_threshold=5, reset_seconds=1), OfferMetrics(),
                         timeout_seconds=0.05)  # fmt: skip

    async def through_redis_py(visitor: str) -> object:
        async with asyncio.timeout(0.05):
            return await client.execute_command("MGET", keys.profile(SITE, visitor), keys.caps(SITE, visitor))

    async def lean(visitor: str) -> object:
        return await store.read(SITE, visitor)

    ways = {"redis-py": through_redis_py, "lean": lean}
    for read in ways.values():  # warm up connections and code paths
        await timed(read, 2_000, readers)
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(rounds):
        for name, read in ways.items():
            best[name] = min(best[name], await timed(read, reads, readers))
    await store.aclose()
    await client.aclose()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-redis-read-") as directory:
        server = RedisServer(data_dir=Path(directory))
        server.start()
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as the API runs
                best = runner.run(run(server.url, args.reads, args.readers, args.rounds))
        finally:
            server.stop()
    print(f"CPU per visitor read ({args.readers} concurrent readers, best of {args.rounds} rounds "
          f"of {args.reads:,} reads):")  # fmt: skip
    for name, micros in best.items():
        print(f"  {name:9} {micros:6.1f} us")


if __name__ == "__main__":
    main()
