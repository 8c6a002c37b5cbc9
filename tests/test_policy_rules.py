"""Unit tests of the hard rules (targeting, dates, cart, pages, interest) and frequency caps."""

from __future__ import annotations

from typing import Any

import pytest

from tracker.models.caps import DAY_MS, SESSION_GAP_MS, ImpressionCounts
from tracker.models.catalogue import Offer, parse_catalogue
from tracker.models.eligibility import Exclusion, exclusion, split_eligible
from tracker.models.features import DecisionContext

NOW = 1_764_000_000_000  # 2025-11-24T16:00:00Z
SLOT = "home-hero"


def make(offer_id: str = "o", **fields: Any) -> Offer:
    return Offer.model_validate({"id": offer_id, "slots": [SLOT], "title": offer_id, "link": "/", **fields})


def reason(offer: Offer, ctx: DecisionContext | None = None, **kwargs: Any) -> str | None:
    found = exclusion(offer, ctx or DecisionContext(), now_ms=kwargs.pop("now_ms", NOW), **kwargs)
    return None if found is None else str(found)


def test_an_unrestricted_offer_is_always_eligible() -> None:
    assert reason(make()) is None
    assert reason(make(), DecisionContext(device="mobile", cart_value=999, page_path="/x")) is None


def test_disabled_and_date_window() -> None:
    assert reason(make(enabled=False)) == "disabled"
    later = make(starts_at="2030-01-01T00:00:00Z")
    assert reason(later) == "not_started"
    assert reason(later, now_ms=None) is None, "no clock: dates are not checked"
    over = make(starts_at="2020-01-01T00:00:00Z", ends_at="2025-11-24T16:00:00Z")
    assert reason(over) == "ended", "ends_at is exclusive"
    assert reason(over, now_ms=NOW - 1) is None


@pytest.mark.parametrize(
    ("audience", "returning", "expected"),
    [
        ("new", False, None),
        ("new", True, "audience"),
        ("returning", True, None),
        ("returning", False, "audience"),
    ],
)
def test_audience(audience: str, returning: bool, expected: str | None) -> None:
    assert reason(make(audience=audience), DecisionContext(is_returning=returning)) == expected


def test_device_and_segment_targeting() -> None:
    desktop = make(devices=["desktop", "tablet"])
    assert reason(desktop, DecisionContext(device="tablet")) is None
    assert reason(desktop, DecisionContext(device="mobile")) == "device"
    assert reason(desktop, DecisionContext(device=None)) == "device", "unknown device: not targeted"
    segment = make(segments=[2, 5])
    assert reason(segment, DecisionContext(segment=5)) is None
    assert reason(segment, DecisionContext(segment=1)) == "segment"
    assert reason(segment, DecisionContext(segment=None)) == "segment"


def test_cart_bounds_are_inclusive() -> None:
    offer = make(min_cart_value=50, max_cart_value=200)
    assert reason(offer, DecisionContext(cart_value=49.99)) == "cart_below_min"
    assert reason(offer, DecisionContext(cart_value=50)) is None
    assert reason(offer, DecisionContext(cart_value=200)) is None
    assert reason(offer, DecisionContext(cart_value=200.01)) == "cart_above_max"


def test_page_patterns() -> None:
    offer = make(pages=["/c/shoes*", "/p/?hoe-*"])
    assert reason(offer, DecisionContext(page_path="/c/shoes/trail")) is None
    assert reason(offer, DecisionContext(page_path="/p/shoe-12")) is None
    assert reason(offer, DecisionContext(page_path="/c/books")) == "page"
    assert reason(offer, DecisionContext(page_path=None)) == "page", "unknown page: not targeted"


def test_require_interest_accepts_interest_or_page_category() -> None:
    offer = make(categories=["shoes", "outdoor"], require_interest=True)
    assert reason(offer, DecisionContext()) == "no_interest"
    assert reason(offer, DecisionContext(interests={"books": 9.0})) == "no_interest"
    assert reason(offer, DecisionContext(interests={"outdoor": 0.2})) is None
    assert reason(offer, DecisionContext(page_category="shoes")) is None


def test_caps_per_session_and_per_day() -> None:
    offer = make(caps={"per_session": 2, "per_day": 3})
    counts = ImpressionCounts()
    ctx = DecisionContext(session_id="s1")
    for i in range(2):
        assert reason(offer, ctx, counts=counts) is None
        counts.record("o", at_ms=NOW + i, session_id="s1", decision_id=f"d{i}")
    assert reason(offer, ctx, counts=counts) == "cap_session"
    # A new session the same day: the session cap resets, the day cap still counts.
    ctx2 = DecisionContext(session_id="s2")
    assert reason(offer, ctx2, counts=counts) is None
    counts.record("o", at_ms=NOW + 10, session_id="s2", decision_id="d2")
    assert reason(offer, ctx2, counts=counts) == "cap_day"
    # The next UTC day both reset.
    assert reason(offer, DecisionContext(session_id="s3"), counts=counts, now_ms=NOW + DAY_MS) is None
    # Without impression history or without a clock, caps cannot be checked.
    assert reason(offer, ctx, counts=None) is None
    assert reason(offer, ctx, counts=counts, now_ms=None) is None


def test_split_eligible_lists_every_exclusion_in_catalogue_order() -> None:
    catalogue = parse_catalogue(
        {
            "offers": [
                {"id": "welcome", "slots": [SLOT], "title": "W", "link": "/", "default": True},
                {"id": "mobile", "slots": [SLOT], "title": "M", "link": "/", "devices": ["mobile"]},
                {"id": "rich", "slots": [SLOT], "title": "R", "link": "/", "min_cart_value": 100},
                {"id": "any", "slots": [SLOT], "title": "A", "link": "/", "categories": ["x"]},
            ]
        }
    )
    eligible, excluded = split_eligible(catalogue, SLOT, DecisionContext(device="desktop"), now_ms=NOW)
    assert [o.id for o in eligible] == ["welcome", "any"]
    assert [(o.id, r) for o, r in excluded] == [
        ("mobile", Exclusion.DEVICE),
        ("rich", Exclusion.CART_BELOW_MIN),
    ]
    assert split_eligible(catalogue, "nowhere", DecisionContext(), now_ms=NOW) == ([], [])


# --- Impression counts -------------------------------------------------------------------------


def test_recording_is_idempotent_per_decision() -> None:
    counts = ImpressionCounts()
    assert counts.record("o", at_ms=NOW, session_id="s", decision_id="d1")
    assert not counts.record("o", at_ms=NOW + 5, session_id="s", decision_id="d1")
    assert counts.record("o", at_ms=NOW + 9, session_id="s", decision_id="d2")
    assert counts.session_count("o", now_ms=NOW + 10, session_id="s") == 2
    assert counts.day_count("o", now_ms=NOW + 10) == 2
    assert counts.day_count("other", now_ms=NOW + 10) == 0


def test_without_session_ids_a_gap_ends_the_session() -> None:
    counts = ImpressionCounts()
    counts.record("o", at_ms=NOW)
    assert counts.session_count("o", now_ms=NOW + SESSION_GAP_MS) == 1
    assert counts.session_count("o", now_ms=NOW + SESSION_GAP_MS + 1) == 0
    counts.record("o", at_ms=NOW + SESSION_GAP_MS + 1)
    assert counts.session_count("o", now_ms=NOW + SESSION_GAP_MS + 2) == 1, "a new session started"
    assert counts.day_count("o", now_ms=NOW + SESSION_GAP_MS + 2) == 2


def test_a_late_impression_from_a_past_day_does_not_count_today() -> None:
    counts = ImpressionCounts()
    counts.record("o", at_ms=NOW, session_id="s")
    counts.record("o", at_ms=NOW - DAY_MS, session_id="old")
    assert counts.day_count("o", now_ms=NOW) == 1


def test_counts_round_trip_as_plain_data() -> None:
    counts = ImpressionCounts()
    counts.record("o", at_ms=NOW, session_id="s", decision_id="d1")
    data = counts.to_dict()
    assert ImpressionCounts.from_dict(data) == counts
    with pytest.raises(ValueError, match="impression counts layout version 99"):
        ImpressionCounts.from_dict(data | {"v": 99})


def test_counts_bind_while_their_day_or_session_lasts() -> None:
    counts = ImpressionCounts()
    assert not counts.live(NOW), "nothing counted"
    counts.record("run", at_ms=NOW, session_id="s1")
    assert counts.live(NOW + 1)
    day_end = (NOW // DAY_MS + 1) * DAY_MS
    assert not counts.live(day_end + 1), "a new day, the session long over: the state may go"
    counts.record("run", at_ms=day_end - 60_000, session_id="s2")
    assert counts.live(day_end + 60_000), "a session running past midnight still binds"
    late = day_end - 60_000 + SESSION_GAP_MS + 1
    assert not counts.live(late)
    assert counts.day_count("run", now_ms=late) == 0 and counts.session_count("run", now_ms=late) == 0
