"""Unit tests of the pure ranking: relevance first, margin and priority only break ties."""

from __future__ import annotations

from typing import Any

import pytest

from tracker.models.catalogue import Catalogue, parse_catalogue
from tracker.models.ranking import choose_default, choose_offer, relevance

SLOT = "home-hero"


def offer(offer_id: str, categories: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "id": offer_id,
        "slots": [SLOT],
        "categories": categories,
        "title": offer_id,
        "link": "/",
        **fields,
    }


def catalogue(*offers: dict[str, Any]) -> Catalogue:
    welcome = offer("welcome", [], default=True)
    return parse_catalogue({"offers": [welcome, *offers]})


def test_relevance_beats_margin() -> None:
    cat = catalogue(offer("shoes", ["shoes"], margin=0.05), offer("pans", ["kitchen"], margin=0.95))
    choice = choose_offer(cat, SLOT, {"shoes": 2.0, "kitchen": 1.9}, min_interest=0.5)
    assert choice is not None
    assert choice.offer.id == "shoes"
    assert choice.personalised
    assert choice.reason == "interest:shoes"
    assert choice.score == 2.0


def test_small_real_relevance_difference_still_beats_full_margin() -> None:
    cat = catalogue(
        offer("shoes", ["shoes"], margin=0.0), offer("pans", ["kitchen"], margin=1.0, priority=1000)
    )
    choice = choose_offer(cat, SLOT, {"shoes": 1.001, "kitchen": 1.0}, min_interest=0.5)
    assert choice is not None and choice.offer.id == "shoes"


def test_margin_breaks_relevance_ties() -> None:
    cat = catalogue(
        offer("cheap", ["shoes"], margin=0.1, priority=50),
        offer("rich", ["shoes"], margin=0.6),
    )
    choice = choose_offer(cat, SLOT, {"shoes": 3.0}, min_interest=0.5)
    assert choice is not None and choice.offer.id == "rich"


def test_float_noise_in_relevance_counts_as_a_tie() -> None:
    cat = catalogue(offer("a", ["x", "y"], margin=0.1), offer("b", ["z"], margin=0.9))
    # 0.1 + 0.2 != 0.3 in binary floating point: the tie must still go to margin.
    choice = choose_offer(cat, SLOT, {"x": 0.1, "y": 0.2, "z": 0.3}, min_interest=0.0)
    assert choice is not None and choice.offer.id == "b"


def test_priority_breaks_remaining_ties() -> None:
    cat = catalogue(
        offer("low", ["shoes"], margin=0.3, priority=1), offer("high", ["shoes"], margin=0.3, priority=9)
    )
    choice = choose_offer(cat, SLOT, {"shoes": 3.0}, min_interest=0.5)
    assert choice is not None and choice.offer.id == "high"


def test_full_tie_is_decided_by_id_whatever_the_catalogue_order() -> None:
    first, second = offer("b-offer", ["shoes"]), offer("a-offer", ["shoes"])
    for order in ((first, second), (second, first)):
        choice = choose_offer(catalogue(*order), SLOT, {"shoes": 3.0}, min_interest=0.5)
        assert choice is not None and choice.offer.id == "a-offer"


def test_relevance_sums_all_target_categories() -> None:
    cat = catalogue(offer("hike", ["outdoor", "shoes"]), offer("run", ["shoes"], margin=1.0))
    choice = choose_offer(cat, SLOT, {"shoes": 1.5, "outdoor": 1.0}, min_interest=0.5)
    assert choice is not None
    assert (choice.offer.id, choice.score, choice.reason) == ("hike", 2.5, "interest:shoes")


def test_default_when_visitor_has_no_interests() -> None:
    cat = catalogue(offer("shoes", ["shoes"]))
    choice = choose_offer(cat, SLOT, {}, min_interest=0.5)
    assert choice is not None
    assert (choice.offer.id, choice.personalised, choice.reason, choice.score) == (
        "welcome",
        False,
        "default",
        0.0,
    )


def test_default_when_interest_is_below_threshold() -> None:
    cat = catalogue(offer("shoes", ["shoes"]))
    below = choose_offer(cat, SLOT, {"shoes": 0.49}, min_interest=0.5)
    at = choose_offer(cat, SLOT, {"shoes": 0.5}, min_interest=0.5)
    assert below is not None and below.offer.id == "welcome"
    assert at is not None and at.offer.id == "shoes"


def test_zero_relevance_never_personalises_even_with_zero_threshold() -> None:
    cat = catalogue(offer("shoes", ["shoes"]))
    choice = choose_offer(cat, SLOT, {"books": 5.0}, min_interest=0.0)
    assert choice is not None and not choice.personalised


def test_default_is_chosen_by_priority_then_margin() -> None:
    cat = parse_catalogue(
        {
            "offers": [
                offer("d1", [], default=True, priority=1, margin=0.9),
                offer("d2", [], default=True, priority=5, margin=0.1),
                offer("d3", [], default=True, priority=5, margin=0.2),
            ]
        }
    )
    choice = choose_default(cat, SLOT)
    assert choice is not None and choice.offer.id == "d3"


def test_unknown_slot_gives_none() -> None:
    cat = catalogue(offer("shoes", ["shoes"]))
    assert choose_offer(cat, "nowhere", {"shoes": 9.0}, min_interest=0.5) is None
    assert choose_default(cat, "nowhere") is None


def test_disabled_offer_is_never_chosen() -> None:
    cat = catalogue(offer("off", ["shoes"], enabled=False), offer("on", ["shoes"], margin=0.0))
    choice = choose_offer(cat, SLOT, {"shoes": 3.0}, min_interest=0.5)
    assert choice is not None and choice.offer.id == "on"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (1_764_547_199_999, "welcome"),  # 2025-11-30T23:59:59.999Z: not started yet
        (1_764_547_200_000, "xmas"),  # 2025-12-01T00:00:00Z: starts_at is inclusive
        (1_766_707_200_000, "welcome"),  # 2025-12-26T00:00:00Z: ends_at is exclusive
    ],
)
def test_date_window_is_respected(now: int, expected: str) -> None:
    xmas = offer("xmas", ["shoes"], starts_at="2025-12-01T00:00:00Z", ends_at="2025-12-26T00:00:00Z")
    choice = choose_offer(catalogue(xmas), SLOT, {"shoes": 3.0}, min_interest=0.5, now_ms=now)
    assert choice is not None and choice.offer.id == expected


def test_input_interests_are_not_modified() -> None:
    interests = {"shoes": 3.0, "books": 1.0}
    choose_offer(catalogue(offer("shoes", ["shoes"])), SLOT, interests, min_interest=0.5)
    assert interests == {"shoes": 3.0, "books": 1.0}


def test_relevance_ignores_categories_the_visitor_never_showed() -> None:
    cat = catalogue(offer("shoes", ["shoes", "garden"]))
    assert relevance(cat.offers_for_slot(SLOT)[1], {"shoes": 2.0}) == 2.0
