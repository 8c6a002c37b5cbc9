"""Collector CPU per request in the app itself: no network, no Kafka, no other process.

Calls the collector's ASGI app directly with the same realistic batches as
``bench/collector_intake.py`` (10-20 events) and a producer that acknowledges at once, and
reports process CPU time per request: the stable figure for comparing changes to
validation, enrichment and routing, where the end-to-end intake bench varies with whatever
else shares the machine. Best of ``--rounds`` (the least disturbed round).

Usage: ``.venv/bin/python bench/collector_asgi_cpu.py [--requests 1000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from collector_intake import SITE, make_bodies

from tracker.collect.app import create_app
from tracker.kafka_producer import Record
from tracker.settings import Settings, SiteConfig

ORIGIN = "https://shop.example"
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


class AcknowledgingProducer:
    """Acknowledges every batch at once: what is measured is the app, not Kafka."""

    ready = True
    records = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check(self) -> bool:
        return True

    async def send_batch(self, records: Sequence[Record]) -> None:
        self.records += len(records)


async def _post(app: Any, body: bytes) -> int:
    headers = [
        (b"host", b"collector"),
        (b"content-type", b"application/json"),
        (b"origin", ORIGIN.encode()),
        (b"user-agent", USER_AGENT.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def measure(requests: int, rounds: int) -> dict[str, float]:
    settings = Settings(
        environment="test", sites=(SiteConfig(id=SITE, origins=(ORIGIN,)),), rate_limit_per_second=0.0
    )
    app = create_app(settings, producer=AcknowledgingProducer())
    bodies = make_bodies(requests, 10, 20)
    events = sum(count for _, count in bodies)
    for body, _ in bodies[:200]:  # warm-up: caches (user agent), lazily built validators
        if (status := await _post(app, body)) != 202:
            raise SystemExit(f"the collector answered {status}, not 202: the bench's batches are wrong")
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for body, _ in bodies:
            await _post(app, body)
        best = min(best, time.process_time() - started)
    return {
        "us_per_request": best / requests * 1e6,
        "us_per_event": best / events * 1e6,
        "events_per_request": events / requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    result = asyncio.run(measure(args.requests, args.rounds))
    print(
        f"collector app, POST /v1/events, {result['events_per_request']:.1f} events per request: "
        f"{result['us_per_request']:.0f} us CPU per request, {result['us_per_event']:.1f} us per event "
        f"(best of {args.rounds} rounds of {args.requests})"
    )


if __name__ == "__main__":
    main()
