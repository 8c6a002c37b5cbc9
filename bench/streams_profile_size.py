"""Bytes per visitor in Redis: the stored profile of typical visitors (budget: under 1 KB).

Folds simulated visits with the worker's own code (``VisitorState.apply``, then the
Redis layout the worker writes), stores each profile in a real Redis with the TTL
the worker sets, and reports per visitor:

- ``json``: the stored value's length;
- ``MEMORY USAGE``: what Redis says the key costs (value, key, TTL, allocator overhead);
- ``used_memory`` delta / visitors: the whole server's growth, the figure to size Redis by;
- the worker's table value (changelog record) for the same visitors, for comparison.

A typical visitor here: 1-4 visits (30-minute gaps), 4-25 events each, mostly page
views with engagement pings and product views over a 2,000-product catalogue in 12
categories; a cart in a fifth of visits, a purchase in one in twenty; banners
shown on half the page views and clicked now and then. A heavy visitor (``--heavy``)
has 15 visits of 40 events.

    .venv/bin/python bench/streams_profile_size.py                 # starts its own Redis
    .venv/bin/python bench/streams_profile_size.py --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis

from tracker import keys
from tracker.models.visitor_state import VisitorState
from tracker.schema import TrackedEvent
from tracker.settings import Settings
from tracker.streams.visitors import profile_config

CATEGORIES = [
    "shoes",
    "outdoor",
    "kitchen",
    "books",
    "electronics",
    "garden",
    "toys",
    "beauty",
    "sports",
    "music",
    "home-decor",
    "pet-supplies",
]
OFFERS = [f"{c}-offer-{n}" for c in CATEGORIES for n in range(3)] + ["default-welcome-10"]


def visitor_events(
    site: str, rng: random.Random, *, visits: int, per_visit: tuple[int, int]
) -> list[dict[str, Any]]:
    visitor = uuid.UUID(int=rng.getrandbits(128)).hex[:22]  # a snippet-like first-party id
    now = int(time.time() * 1000) - 20 * 24 * 3600 * 1000
    favourite = rng.choice(CATEGORIES)
    events: list[dict[str, Any]] = []

    def add(kind: str, **fields: Any) -> None:
        events.append(
            {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "type": kind,
                "ts": now,
                "site_id": site,
                "visitor_id": visitor,
                "url": f"https://shop.example/{fields.pop('path', '')}",
                **fields,
            }
        )

    for _ in range(visits):
        now += rng.randrange(2, 96) * 3600 * 1000
        referrer = rng.choice([None, "https://www.google.com/", "https://www.facebook.com/"])
        add("page_view", path="?utm_source=news" if rng.random() < 0.2 else "", referrer=referrer)
        for _ in range(rng.randrange(*per_visit)):
            now += rng.randrange(5, 90) * 1000
            category = favourite if rng.random() < 0.7 else rng.choice(CATEGORIES)
            product = f"{category}-{rng.randrange(2000 // len(CATEGORIES)):04d}"
            roll = rng.random()
            if roll < 0.35:
                add(
                    "product_view",
                    path=f"p/{product}",
                    product_id=product,
                    category=category,
                    price=round(rng.uniform(5, 300), 2),
                    currency="EUR",
                )
            elif roll < 0.55:
                add("page_view", path=f"c/{category}", category=category)
                if rng.random() < 0.5:
                    add(
                        "offer_impression",
                        decision_id=uuid.uuid4().hex,
                        offer_id=rng.choice(OFFERS),
                        slot="home-hero",
                    )
            elif roll < 0.85:
                add("page_ping", engaged_ms=rng.randrange(10, 120) * 1000, scroll_depth=rng.randrange(101))
            elif roll < 0.92:
                add("search", query=category)
            elif roll < 0.97:
                add("add_to_cart", product_id=product, category=category, price=19.9, quantity=1)
            else:
                add("offer_click", decision_id=uuid.uuid4().hex, offer_id=rng.choice(OFFERS))
        if rng.random() < 0.05:
            add(
                "purchase",
                order_id=uuid.uuid4().hex[:12],
                value=round(rng.uniform(20, 400), 2),
                currency="EUR",
                items=[{"product_id": f"{favourite}-0001", "category": favourite}],
            )
    return events


def quantiles(values: list[int]) -> str:
    ordered = sorted(values)

    def q(p: float) -> int:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return f"p50 {q(0.5):5d}   p90 {q(0.9):5d}   p99 {q(0.99):5d}   max {ordered[-1]:5d}"


def measure(client: redis.Redis, settings: Settings, visitors: int, *, heavy: bool, seed: int) -> None:
    rng = random.Random(seed)
    config = profile_config(settings)
    site = f"size-{uuid.uuid4().hex[:6]}"
    client.flushdb()
    baseline = int(client.info("memory")["used_memory"])
    json_sizes, memory_sizes, state_sizes, events_per = [], [], [], []
    pipe = client.pipeline(transaction=False)
    stored: list[str] = []
    for _ in range(visitors):
        visits = 15 if heavy else rng.randrange(1, 5)
        span = (35, 45) if heavy else (4, 25)
        raw_events = visitor_events(site, rng, visits=visits, per_visit=span)
        events_per.append(len(raw_events))
        state = None
        for offset, event in enumerate(raw_events):
            record = TrackedEvent.model_validate({"event": event, "server": {"received_at": event["ts"]}})
            if state is None:
                state = VisitorState.new(site, record.event.visitor_id)
            state.apply(record, partition=0, offset=offset, config=config)
        assert state is not None and state.profile is not None
        value = orjson.dumps(state.profile.to_dict(config))
        key = keys.profile(site, state.visitor_id)
        pipe.set(key, value, ex=settings.profile_retention_seconds)
        stored.append(key)
        json_sizes.append(len(value))
        state_sizes.append(len(state.to_bytes()))
        if len(pipe) >= 500:
            pipe.execute()
    pipe.execute()
    for start in range(0, len(stored), 500):
        for key in stored[start : start + 500]:
            pipe.memory_usage(key, samples=0)
        memory_sizes.extend(int(n) for n in pipe.execute())
    grown = int(client.info("memory")["used_memory"]) - baseline
    kind = "heavy" if heavy else "typical"
    print(f"{visitors} {kind} visitors, {sum(events_per) / visitors:.0f} events each on average")
    print(f"  stored JSON bytes        {quantiles(json_sizes)}")
    print(f"  Redis MEMORY USAGE       {quantiles(memory_sizes)}")
    print(f"  Redis used_memory growth {grown / visitors:7.0f} bytes per visitor")
    print(f"  worker table value       {quantiles(state_sizes)}  (Kafka changelog, not Redis)")
    client.flushdb()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visitors", type=int, default=5000)
    parser.add_argument("--redis-url", help="an existing Redis (its database is FLUSHED); default: start one")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    settings = Settings()
    if args.redis_url:
        client = redis.Redis.from_url(args.redis_url)
        measure(client, settings, args.visitors, heavy=False, seed=args.seed)
        measure(client, settings, max(1, args.visitors // 10), heavy=True, seed=args.seed)
        return
    from tracker.devstack.redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="bench-redis-") as data:
        server = RedisServer(data_dir=Path(data))
        server.start()
        try:
            client = redis.Redis.from_url(server.url)
            print(f"Redis {client.info('server')['redis_version']} (started for this run)")
            measure(client, settings, args.visitors, heavy=False, seed=args.seed)
            measure(client, settings, max(1, args.visitors // 10), heavy=True, seed=args.seed)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
