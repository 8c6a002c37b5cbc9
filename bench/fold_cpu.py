"""CPU cost of the stream worker's per-event path, stage by stage (no Kafka, no Redis).

What :class:`tracker.streams.visitors.VisitorProcessor` does with the records of a batch,
with the worker's own code: ``parse_tracked`` and ``VisitorState.apply`` for each record,
then, once per changed visitor per batch, ``VisitorState.to_bytes`` (the changelog) and
the Redis projection (``assign(snapshot, profile_features(profile))`` then
``orjson.dumps(profile.to_dict(config))``). ``from_bytes`` (table recovery) is timed too.

The records are a fixed-seed mix like ``tests/streams_support.visit_script`` (page views
with campaign and external referrers, product views, pings, carts, searches, offers,
purchases, a few removals and link clicks, out-of-order events and client retries),
serialized exactly as the collector writes them (``TRACKED_ADAPTER.dump_json``).

Each figure is the best of ``--repeat`` runs after a warm-up. ``digest`` is a SHA-256 of
every visitor's table bytes, Redis bytes and closed-session records after the fold: a
change that makes the path cheaper must leave it identical.

    .venv/bin/python bench/fold_cpu.py
    .venv/bin/python bench/fold_cpu.py --events 100000 --visitors 5000 --batch 500
    .venv/bin/python bench/fold_cpu.py --profile        # cProfile of the whole path, top functions
    .venv/bin/python bench/fold_cpu.py --digest-only    # compare before/after a change: must not move
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import platform
import pstats
import random
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from tracker.models.profile import ProfileConfig
from tracker.models.segments import SegmentLearner, assign, profile_features
from tracker.models.visitor_state import VisitorState
from tracker.schema import TRACKED_ADAPTER, TrackedEvent, parse_tracked
from tracker.settings import Settings
from tracker.streams.visitors import profile_config

SITE = "shop"
PARTITIONS = 4
# A fixed start (2026-11-23) rather than the clock: the digest must not depend on when it runs.
START_MS = 1_763_900_000_000
CATEGORIES = ["shoes", "books", "garden", "toys", "kitchen", "outdoor", "electronics", "beauty"]
KINDS = [
    "page_view",
    "page_view",
    "product_view",
    "product_view",
    "product_view",
    "page_ping",
    "page_ping",
    "add_to_cart",
    "search",
    "offer_impression",
    "offer_click",
    "purchase",
    "remove_from_cart",
    "link_click",
]
REFERRERS = [
    None,
    None,
    None,
    "https://shop.example/",
    "https://www.google.com/search?q=shoes",
    "https://news.example/story",
    "https://www.facebook.com/",
]
CAMPAIGNS = ["", "", "", "", "?utm_source=news&utm_medium=email", "?gclid=abc123", "?utm_campaign=spring"]


def make_records(events: int, visitors: int, seed: int) -> list[tuple[int, int, bytes]]:
    """``(partition, offset, value)`` of ``events`` records of ``visitors`` interleaved visitors."""
    rng = random.Random(seed)
    names = [f"visitor-{i:06d}" for i in range(visitors)]
    clocks = dict.fromkeys(names, START_MS)
    sent: list[bytes] = []
    n = 0
    while len(sent) < events:
        visitor = names[rng.randrange(visitors)]
        clocks[visitor] += rng.choice([3_000, 8_000, 20_000, 90_000, 2 * 3600 * 1000])
        ts = clocks[visitor] - rng.choice([0, 0, 0, 40_000])  # sometimes out of order
        category = rng.choice(CATEGORIES)
        kind = rng.choice(KINDS)
        fields: dict[str, Any] = {"url": f"https://shop.example/{category}"}
        if kind == "page_view":
            fields["url"] += rng.choice(CAMPAIGNS)
            fields |= {"referrer": rng.choice(REFERRERS), "title": f"{category} page", "category": category}
        elif kind in ("product_view", "add_to_cart", "remove_from_cart"):
            fields |= {
                "product_id": f"{category}-{rng.randrange(12)}",
                "category": category,
                "price": round(rng.uniform(5, 200), 2),
                "currency": "EUR",
            }
        elif kind == "page_ping":
            fields |= {"engaged_ms": rng.randrange(0, 90_000), "scroll_depth": rng.randrange(101)}
        elif kind == "search":
            fields |= {"query": category}
        elif kind.startswith("offer_"):
            fields |= {"decision_id": f"d-{n}", "offer_id": f"{category}-offer", "slot": "home"}
        elif kind == "purchase":
            lines = [
                {"product_id": f"{c}-{rng.randrange(12)}", "category": c, "price": 19.5, "quantity": 1}
                for c in rng.sample(CATEGORIES, rng.randint(1, 3))
            ]
            fields |= {"order_id": f"o-{n}", "value": round(rng.uniform(5, 300), 2), "currency": "EUR"}
            fields["items"] = lines
        elif kind == "link_click":
            fields |= {"target_url": "https://partner.example/"}
        event = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "type": kind,
            "ts": ts,
            "site_id": SITE,
            "visitor_id": visitor,
            "session_id": f"s-{visitor}",
            **fields,
        }
        # Received a little later, or (a fast client clock) before the client timestamp.
        received = ts + rng.choice([40, 120, 900, -5_000])
        context = {"received_at": received, "browser": "Firefox", "os": "Linux", "device": "desktop"}
        value = TRACKED_ADAPTER.dump_json(TrackedEvent.model_validate({"event": event, "server": context}))
        sent.append(value)
        if rng.random() < 0.05:
            sent.append(sent[rng.randrange(len(sent))])  # a client retry, maybe much later
        n += 1
    sent = sent[:events]
    # Place each record as the collector's partitioner would (one visitor, one partition).
    offsets = [0] * PARTITIONS
    records = []
    for value in sent:
        partition = hash_partition(orjson.loads(value)["event"]["visitor_id"])
        records.append((partition, offsets[partition], value))
        offsets[partition] += 1
    return records


def hash_partition(visitor: str) -> int:
    return int(hashlib.blake2b(visitor.encode(), digest_size=4).hexdigest(), 16) % PARTITIONS


def segment_snapshot(states: dict[str, VisitorState]) -> dict[str, Any]:
    learner = SegmentLearner(clusters=6, seed=42)
    for state in states.values():
        if state.profile is not None:
            learner.learn(profile_features(state.profile))
    return learner.snapshot(version=1, created_at=START_MS)


class Fold:
    """The worker's fold, batch by batch, minus Faust, Kafka and Redis."""

    def __init__(self, config: ProfileConfig, snapshot: dict[str, Any] | None, batch: int) -> None:
        self.config, self.snapshot, self.batch = config, snapshot, batch
        self.sessions: list[bytes] = []

    def project(self, state: VisitorState) -> bytes:
        profile = state.profile
        assert profile is not None
        if self.snapshot is not None:
            profile.segment = assign(self.snapshot, profile_features(profile))
            profile.segment_version = self.snapshot["version"]
        return orjson.dumps(profile.to_dict(self.config))

    def run(self, records: list[tuple[int, int, bytes]]) -> tuple[dict[str, VisitorState], int]:
        """Fold every record; return the states and how many (changelog + Redis) writes it made."""
        states: dict[str, VisitorState] = {}
        writes = 0
        config = self.config
        for start in range(0, len(records), self.batch):
            changed: dict[str, VisitorState] = {}
            for partition, offset, value in records[start : start + self.batch]:
                tracked = parse_tracked(value)
                event = tracked.event
                state = states.get(event.visitor_id)
                if state is None:
                    state = states[event.visitor_id] = VisitorState.new(event.site_id, event.visitor_id)
                result = state.apply(tracked, partition=partition, offset=offset, config=config)
                if result.changed:
                    changed[event.visitor_id] = state
                if result.record is not None:
                    self.sessions.append(result.record.model_dump_json().encode())
            for state in changed.values():
                state.to_bytes()
                if state.profile is not None:
                    self.project(state)
            writes += len(changed)
        return states, writes


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def digest(states: dict[str, VisitorState], sessions: list[bytes], config: ProfileConfig) -> str:
    h = hashlib.sha256()
    for key in sorted(states):
        state = states[key]
        h.update(state.to_bytes())
        if state.profile is not None:
            h.update(orjson.dumps(state.profile.to_dict(config)))
    for record in sessions:
        h.update(record)
    return h.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--visitors", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=500, help="records per batch (TRACKER_WORKER_BATCH_MAX)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best one counts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="cProfile the whole path instead")
    parser.add_argument("--digest-only", action="store_true", help="print the digest and stop")
    args = parser.parse_args()

    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.platform()}, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}"
    )
    config = profile_config(Settings())
    records = make_records(args.events, args.visitors, args.seed)
    values = [value for _, _, value in records]
    n = len(records)
    print(f"{n:,} records of {args.visitors:,} visitors, batches of {args.batch}, best of {args.repeat}")

    # The states at the end of the fold (each visitor ~events/visitors events): what the
    # once-per-visitor stages are timed on. The segment model is learnt from them.
    first = Fold(config, None, args.batch)
    final, _ = first.run(records)
    snapshot = segment_snapshot(final)
    path = Fold(config, snapshot, args.batch)
    final, writes = path.run(records)
    print(f"digest: {digest(final, path.sessions, config)}")
    if args.digest_only:
        return 0

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        Fold(config, snapshot, args.batch).run(records)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(
            int(os.environ.get("FOLD_CPU_TOP", "30"))
        )
        return 0

    parsed = [(p, o, parse_tracked(v)) for p, o, v in records]

    def apply_all() -> None:
        states: dict[str, VisitorState] = {}
        for partition, offset, tracked in parsed:
            event = tracked.event
            state = states.get(event.visitor_id)
            if state is None:
                state = states[event.visitor_id] = VisitorState.new(event.site_id, event.visitor_id)
            state.apply(tracked, partition=partition, offset=offset, config=config)

    def parse_all() -> None:
        for value in values:
            parse_tracked(value)

    live = [s for s in final.values() if s.profile is not None]
    blobs = [s.to_bytes() for s in live]

    def project_all() -> None:
        for s in live:
            orjson.dumps(s.profile.to_dict(config))

    def segment_all() -> None:
        for s in live:
            assign(snapshot, profile_features(s.profile))

    stages = [
        # Not kept: the worker drops each parsed record after folding it (a list of 50,000 models
        # would time the garbage collector walking them rather than the parse).
        ("parse_tracked", n, parse_all),
        ("VisitorState.apply", n, apply_all),
        ("to_bytes", len(live), lambda: [s.to_bytes() for s in live]),
        ("from_bytes", len(blobs), lambda: [VisitorState.from_bytes(b) for b in blobs]),
        ("to_dict + orjson.dumps", len(live), project_all),
        ("profile_features + assign", len(live), segment_all),
    ]
    per_write = writes / n
    print(f"writes (changed visitors per batch, summed): {writes:,} = {per_write:.2f} per event\n")
    print(f"{'stage':<28} {'us/call':>9} {'calls/event':>12} {'us/event':>9}")
    for name, calls, fn in stages:
        us = best_of(args.repeat, fn) / calls * 1e6
        per_event = 1.0 if calls == n else (0.0 if name == "from_bytes" else per_write)
        print(f"{name:<28} {us:>9.2f} {per_event:>12.2f} {us * per_event:>9.2f}")
    whole = best_of(args.repeat, lambda: Fold(config, snapshot, args.batch).run(records))
    print(
        f"\nwhole path (parse + apply per record, closed sessions serialized; to_bytes, features + "
        f"assign, to_dict + dumps per changed visitor per batch): {whole / n * 1e6:.2f} us/event "
        f"= {n / whole:,.0f} events/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
