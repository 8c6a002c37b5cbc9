"""The visitor profile: counting, decay, dedupe, RFM, engagement, offers, sessions and the Redis layout
(pure logic)."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tracker.models.profile import (
    FORGET_BELOW,
    MAX_CATEGORIES,
    MAX_OFFERS,
    MAX_PRODUCTS,
    PROFILE_SCHEMA_VERSION,
    Profile,
    ProfileConfig,
    apply_event,
    decay,
    fold_event,
)
from tracker.models.sessions import SessionRules
from tracker.schema import parse_event

T0 = 1_763_900_000_000
HOUR_MS = 3_600_000
HALF_LIFE = 3600.0


def event(type_: str = "product_view", *, ts: int = T0, category: str | None = "shoes", **extra) -> object:
    data = {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "ts": ts,
        "site_id": "shop",
        "visitor_id": "visitor-0001",
        **extra,
    }
    if type_ in ("product_view", "add_to_cart", "remove_from_cart"):
        data.setdefault("product_id", "sku-1")
    if category is not None:
        data["category"] = category
    return parse_event(data)


def fold(profile: Profile, ev, *, received_at: int | None = None, window: int = 16) -> bool:
    return apply_event(
        profile, ev, received_at=received_at or ev.ts, half_life_seconds=HALF_LIFE, dedupe_window=window
    )


def test_counts_events_by_type_and_tracks_first_and_last_seen() -> None:
    p = Profile.new("shop", "visitor-0001")
    fold(p, event("page_view", ts=T0 + 5, category=None))
    fold(p, event(ts=T0))
    fold(p, event(ts=T0 + 10))
    assert p.counts == {"page_view": 1, "product_view": 2}
    assert (p.first_seen, p.last_seen) == (T0, T0 + 10)
    assert p.events_seen == 3


def test_duplicate_event_changes_nothing() -> None:
    p = Profile.new("shop", "visitor-0001")
    ev = event()
    assert fold(p, ev) is True
    snapshot = p.to_dict()
    assert fold(p, ev) is False
    assert p.to_dict() == snapshot


def test_dedupe_memory_is_bounded_to_the_window() -> None:
    p = Profile.new("shop", "visitor-0001")
    first = event()
    fold(p, first, window=4)
    for _ in range(4):
        fold(p, event(), window=4)
    assert len(p.recent_event_ids) == 4
    # Forgotten after the window: a very late redelivery would count again, by design bounded memory.
    assert fold(p, first, window=4) is True


def test_interest_halves_every_half_life() -> None:
    p = Profile.new("shop", "visitor-0001")
    fold(p, event(ts=T0))  # product_view weighs 3
    assert p.interests_at(T0, half_life_seconds=HALF_LIFE)["shoes"] == pytest.approx(3.0)
    assert p.interests_at(T0 + 2 * HOUR_MS, half_life_seconds=HALF_LIFE)["shoes"] == pytest.approx(0.75)


def test_interest_accumulates_with_decay_between_events() -> None:
    p = Profile.new("shop", "visitor-0001")
    fold(p, event(ts=T0))
    fold(p, event(ts=T0 + HOUR_MS))
    assert p.interests_at(T0 + HOUR_MS, half_life_seconds=HALF_LIFE)["shoes"] == pytest.approx(1.5 + 3.0)


def test_out_of_order_event_is_decayed_to_the_stored_time() -> None:
    in_order, shuffled = Profile.new("shop", "v-00000001"), Profile.new("shop", "v-00000001")
    early, late = event(ts=T0), event(ts=T0 + HOUR_MS)
    fold(in_order, early)
    fold(in_order, late)
    fold(shuffled, late)
    fold(shuffled, early)
    now = T0 + 2 * HOUR_MS
    assert shuffled.interests_at(now, half_life_seconds=HALF_LIFE)["shoes"] == pytest.approx(
        in_order.interests_at(now, half_life_seconds=HALF_LIFE)["shoes"]
    )


def test_client_clock_ahead_of_server_is_clamped() -> None:
    p = Profile.new("shop", "visitor-0001")
    fold(p, event(ts=T0 + 10 * HOUR_MS), received_at=T0)
    assert p.last_seen == T0


def test_removing_from_cart_lowers_interest_but_never_below_zero() -> None:
    p = Profile.new("shop", "visitor-0001")
    fold(p, event("page_view"))  # +1
    fold(p, event("remove_from_cart", product_id="sku-1"))  # -3
    assert p.interests_at(T0, half_life_seconds=HALF_LIFE).get("shoes", 0.0) == 0.0


def test_purchase_counts_towards_the_categories_of_its_items() -> None:
    p = Profile.new("shop", "visitor-0001")
    fold(
        p,
        event(
            "purchase",
            category=None,
            order_id="o-1",
            value=42.0,
            currency="EUR",
            items=[{"product_id": "sku-9", "category": "books", "price": 42.0}],
        ),
    )
    assert "books" in p.interests


def test_faint_interests_are_forgotten_and_categories_capped() -> None:
    p = Profile.new("shop", "visitor-0001")
    fold(p, event(ts=T0, category="old"))
    fold(p, event(ts=T0 + 20 * HOUR_MS, category="new"))  # "old" has decayed to 3 / 2**20
    assert "old" not in p.interests and FORGET_BELOW > 3 / 2**20
    for i in range(MAX_CATEGORIES + 5):
        fold(p, event(ts=T0 + 21 * HOUR_MS, category=f"c{i}"))
    assert len(p.interests) == MAX_CATEGORIES


def test_redis_layout_round_trip_keeps_what_readers_use() -> None:
    p = Profile.new("shop", "visitor-0001")
    for ts in (T0, T0 + 1000):
        fold(p, event(ts=ts))
    stored = p.to_dict()
    assert stored["v"] == PROFILE_SCHEMA_VERSION
    assert Profile.from_dict(stored).to_dict() == stored
    back = Profile.from_dict(orjson.loads(orjson.dumps(stored)))
    now = T0 + 5 * HOUR_MS
    assert back.interests_at(now, half_life_seconds=HALF_LIFE) == pytest.approx(
        p.interests_at(now, half_life_seconds=HALF_LIFE), rel=1e-3
    )


def test_worker_state_round_trip_is_exact() -> None:
    p = Profile.new("shop", "visitor-0001")
    for i in range(20):
        fold(p, event(ts=T0 + i * 777_777, category=f"c{i % 3}", product_id=f"sku-{i % 4}"))
    restored = Profile.from_state(orjson.loads(orjson.dumps(p.to_state())))
    assert restored == p
    nxt = event(ts=T0 + 30 * HOUR_MS)
    fold(p, nxt)
    fold(restored, nxt)
    assert restored == p


def test_layout_1_profiles_are_still_read() -> None:
    v1 = {
        "v": 1,
        "site": "shop",
        "visitor": "visitor-0001",
        "first": T0,
        "last": T0 + HOUR_MS,
        "counts": {"product_view": 2},
        "interests": {"shoes": [3.0, T0]},
        "ids": ["abc"],
    }
    p = Profile.from_dict(v1)
    assert p.interests_at(T0 + HOUR_MS, half_life_seconds=HALF_LIFE)["shoes"] == pytest.approx(1.5)
    assert p.counts == {"product_view": 2}


def test_products_decay_on_their_own_half_life_and_are_capped() -> None:
    config = ProfileConfig(half_life_seconds=HALF_LIFE, product_half_life_seconds=HALF_LIFE / 2)
    p = Profile.new("shop", "visitor-0001")
    fold_event(p, event(ts=T0, product_id="sku-1"), received_at=T0, config=config)
    assert p.products_at(T0 + HOUR_MS, half_life_seconds=HALF_LIFE / 2)["sku-1"] == pytest.approx(0.75)
    for i in range(MAX_PRODUCTS + 4):
        fold_event(p, event(ts=T0 + 1000 + i, product_id=f"sku-x{i}"), received_at=T0 + 2000, config=config)
    assert len(p.products) == MAX_PRODUCTS


def test_purchases_make_rfm_and_count_every_line() -> None:
    p = Profile.new("shop", "visitor-0001")
    lines = [
        {"product_id": "sku-9", "category": "books", "price": 12.0},
        {"product_id": "sku-8", "category": "games", "price": 30.0},
    ]
    fold(p, event("purchase", ts=T0, category=None, order_id="o-1", value=42.0, currency="EUR", items=lines))
    fold(p, event("purchase", ts=T0 + HOUR_MS, category=None, order_id="o-2", value=8.5, currency="EUR"))
    assert (p.orders, p.revenue, p.last_order) == (2, 50.5, T0 + HOUR_MS)
    assert {"books", "games"} <= set(p.interests) and {"sku-9", "sku-8"} <= set(p.products)
    assert p.to_dict()["rfm"] == {"orders": 2, "revenue": 50.5, "last_order": T0 + HOUR_MS}


def test_engagement_counts_time_depth_and_returns_not_only_purchases() -> None:
    config = ProfileConfig(half_life_seconds=HALF_LIFE, engagement_half_life_seconds=1e9)
    p = Profile.new("shop", "visitor-0001")
    fold_event(p, event("page_view", ts=T0, category=None), received_at=T0, config=config)  # +1 depth
    fold_event(
        p,
        event("page_ping", ts=T0 + 30_000, category=None, engaged_ms=30_000, scroll_depth=50),
        received_at=T0 + 30_000,
        config=config,
    )  # +1: 30 s engaged
    fold_event(
        p,
        event("page_ping", ts=T0 + 60_000, category=None, engaged_ms=60_000, scroll_depth=80),
        received_at=T0 + 60_000,
        config=config,
    )  # +1: 30 s more (pings carry the page total)
    assert p.engagement.score == pytest.approx(3.0, rel=1e-6)
    fold_event(
        p, event("page_view", ts=T0 + 5 * HOUR_MS, category=None), received_at=T0 + 5 * HOUR_MS, config=config
    )  # a return visit: +3 and +1
    assert p.engagement.score == pytest.approx(7.0, rel=1e-4)
    assert p.sessions == 2 and p.orders == 0


def test_sessions_are_counted_and_the_current_one_summarised() -> None:
    config = ProfileConfig(half_life_seconds=HALF_LIFE, sessions=SessionRules(gap_ms=30 * 60_000))
    p = Profile.new("shop", "visitor-0001")
    first = fold_event(
        p, event("page_view", ts=T0, category=None, url="https://s.example/"), received_at=T0, config=config
    )
    assert first.boundary == "first" and first.closed is None
    fold_event(p, event(ts=T0 + 10 * 60_000), received_at=T0 + 10 * 60_000, config=config)
    later = fold_event(p, event(ts=T0 + 50 * 60_000), received_at=T0 + 50 * 60_000, config=config)
    assert later.boundary == "gap" and later.closed is not None and later.closed.events == 2
    assert p.sessions == 2
    summary = p.to_dict()["session"]
    assert summary["start"] == T0 + 50 * 60_000 and summary["events"] == 1


def test_last_offers_shown_and_clicked_are_kept_most_recent_last() -> None:
    p = Profile.new("shop", "visitor-0001")
    for i in range(MAX_OFFERS + 2):
        fold(p, event("offer_impression", ts=T0 + i, category=None, decision_id=f"d{i}", offer_id=f"o{i}"))
    fold(p, event("offer_impression", ts=T0 + 100, category=None, decision_id="dx", offer_id="o3"))
    fold(p, event("offer_click", ts=T0 + 101, category=None, decision_id="dx", offer_id="o3"))
    shown = [offer for offer, _ in p.offers_shown]
    assert len(shown) == MAX_OFFERS and shown[-1] == "o3" and shown.count("o3") == 1
    assert p.to_dict()["offers"]["clicked"] == [["o3", T0 + 101]]


def test_unknown_layout_version_is_refused_with_advice() -> None:
    data = Profile.new("shop", "visitor-0001").to_dict() | {"v": 99}
    with pytest.raises(ValueError, match="replay the events topic"):
        Profile.from_dict(data)


def test_decay_of_zero_elapsed_is_identity() -> None:
    assert decay(5.0, 0, HALF_LIFE) == 5.0
    assert decay(5.0, -10, HALF_LIFE) == 5.0
