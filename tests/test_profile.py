"""The visitor profile: counting, decay, dedupe and the storage round trip (pure logic)."""

from __future__ import annotations

import uuid

import pytest

from tracker.models.profile import (
    FORGET_BELOW,
    MAX_CATEGORIES,
    Profile,
    apply_event,
    decay,
)
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
    if type_ in ("product_view", "add_to_cart"):
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


def test_storage_round_trip_is_lossless() -> None:
    p = Profile.new("shop", "visitor-0001")
    for ts in (T0, T0 + 1000):
        fold(p, event(ts=ts))
    assert Profile.from_dict(p.to_dict()).to_dict() == p.to_dict()


def test_unknown_layout_version_is_refused_with_advice() -> None:
    data = Profile.new("shop", "visitor-0001").to_dict() | {"v": 99}
    with pytest.raises(ValueError, match="replay the events topic"):
        Profile.from_dict(data)


def test_decay_of_zero_elapsed_is_identity() -> None:
    assert decay(5.0, 0, HALF_LIFE) == 5.0
    assert decay(5.0, -10, HALF_LIFE) == 5.0
