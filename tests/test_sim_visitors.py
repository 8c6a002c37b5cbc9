"""Simulated visitors: their events are valid, seeded, and mostly in their favourite category."""

from __future__ import annotations

import random
from collections import Counter

from tracker.schema import parse_event
from tracker.sim.visitors import SimVisitor

CATEGORIES = ["shoes", "books", "garden"]


def test_events_are_valid_and_favour_the_favourite_category() -> None:
    visitor = SimVisitor.create("demo", CATEGORIES, random.Random(1), favourite="books")
    events = [parse_event(visitor.next_event(CATEGORIES, now_ms=1_763_900_000_000)) for _ in range(500)]
    by_category = Counter(e.category for e in events)
    assert by_category.most_common(1)[0][0] == "books"
    assert by_category["books"] / len(events) > 0.7
    assert len({e.event_id for e in events}) == len(events)


def test_same_seed_same_visitor() -> None:
    a = SimVisitor.create("demo", CATEGORIES, random.Random(3))
    b = SimVisitor.create("demo", CATEGORIES, random.Random(3))
    assert a.visitor_id == b.visitor_id
    assert a.next_event(CATEGORIES, now_ms=1) == b.next_event(CATEGORIES, now_ms=1)
