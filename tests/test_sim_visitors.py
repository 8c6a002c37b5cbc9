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


def test_banners_seen_send_valid_impressions_and_clicks_more_often_when_they_fit() -> None:
    from tracker.sim.driver import CLICK_IF_FITS, CLICK_OTHERWISE, OfferSeen, feedback_events

    rng = random.Random(5)
    visitor = SimVisitor.create("demo", CATEGORIES, rng, favourite="shoes")
    fitting = OfferSeen("shoes-sale", True, ("shoes",), "d-1")
    other = OfferSeen("garden-tools", False, ("garden",), "d-2")
    clicks = {True: 0, False: 0}
    for n in range(2000):
        seen = fitting if n % 2 else other
        events, clicked = feedback_events(visitor, seen, rng, now_ms=1_763_900_000_000)
        parsed = [parse_event(e) for e in events]
        assert parsed[0].type.value == "offer_impression" and parsed[0].decision_id == seen.decision_id
        assert len(parsed) == (2 if clicked else 1)
        clicks[seen is fitting] += clicked
    assert abs(clicks[True] / 1000 - CLICK_IF_FITS) < 0.05
    assert abs(clicks[False] / 1000 - CLICK_OTHERWISE) < 0.02
    # No banner, nothing to report.
    assert feedback_events(visitor, OfferSeen(None, False, ()), rng, now_ms=1) == ([], False)


def test_demo_learning_periods_yield_to_the_environment(monkeypatch) -> None:
    from tracker.local import DEMO_LEARNING, demo_learning
    from tracker.settings import Settings

    assert demo_learning(Settings()).attribution_window_seconds == DEMO_LEARNING["attribution_window_seconds"]
    monkeypatch.setenv("TRACKER_ATTRIBUTION_WINDOW_SECONDS", "900")
    assert demo_learning(Settings()).attribution_window_seconds == 900
