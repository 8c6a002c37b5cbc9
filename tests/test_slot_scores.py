"""Scoring a slot's offers at once (``tracker.models.slot_scores``) decides exactly as scoring them
one by one: the same offer, propensity, reason, candidates, scores and features, to the last bit."""

from __future__ import annotations

import random

import pytest

from tracker.models import slot_scores
from tracker.models.catalogue import Catalogue, parse_catalogue
from tracker.models.features import DecisionContext
from tracker.models.learner import ClickModel
from tracker.models.policy import PolicyConfig, decide
from tracker.models.slot_scores import AT_ONCE_FROM, SlotScorer, SlotScorers

SLOT = "home-hero"
# Visitors also like categories no offer targets, and offers target some no visitor likes.
OFFER_CATEGORIES = ["shoes", "outdoor", "kitchen", "books", "garden", "toys"]
VISITOR_CATEGORIES = ["shoes", "outdoor", "kitchen", "books", "music", "sport"]


def random_catalogue(rng: random.Random, offers: int) -> Catalogue:
    entries = [{"id": "welcome", "slots": [SLOT], "title": "Welcome", "link": "/", "default": True}]
    for n in range(offers):
        entries.append(
            {
                "id": f"offer-{n:03d}",
                "slots": [SLOT],
                "categories": rng.sample(OFFER_CATEGORIES, rng.choice([0, 1, 1, 2, 3])),
                "title": f"Offer {n}",
                "link": "/",
                "margin": rng.choice([0.0, 0.1, 0.35, 0.9]),
                "priority": rng.randrange(3),
                "default": rng.random() < 0.1,
                "devices": rng.choice([[], [], ["mobile"]]),
            }
        )
    return parse_catalogue({"offers": [e for e in entries if e.get("categories") or e["default"]]})


def random_context(rng: random.Random) -> DecisionContext:
    return DecisionContext(
        interests={c: rng.choice([rng.random() * 20, 0.0, -1.0]) for c in rng.sample(VISITOR_CATEGORIES, 3)}
        if rng.random() < 0.8
        else {},
        segment=rng.choice([None, 0, 1, 2]),
        is_returning=rng.random() < 0.5,
        device=rng.choice([None, "mobile", "desktop"]),
        page_type=rng.choice([None, "product", "category"]),
        page_category=rng.choice([None, *OFFER_CATEGORIES, "music"]),
        cart_value=rng.choice([0.0, 40.0, 400.0]),
        session_page_views=rng.randrange(0, 10),
    )


def test_scoring_the_slot_at_once_decides_exactly_as_offer_by_offer() -> None:
    rng = random.Random(17)
    compared = 0
    for round_ in range(6):
        catalogue = random_catalogue(rng, rng.choice([3, 20, 45]))
        offers = catalogue.offers_for_slot(SLOT)
        config = PolicyConfig(
            value_weight=[0.0, 0.02][round_ % 2],
            optimism_z=[1.5, 0.0, 2.5][round_ % 3],
            ceiling_z=[2.0, 0.0][round_ // 3],
            prior_impressions=[5.0, 0.0][round_ // 5],
        )
        model = ClickModel()
        for n in range(800):
            ctx = random_context(rng)
            # The scorer reads the model once: a frozen copy of it, as the offer API holds one.
            frozen = ClickModel.from_snapshot(model.to_snapshot())
            one_by_one, at_once = (
                decide(
                    catalogue,
                    SLOT,
                    ctx,
                    model=frozen,
                    rng=random.Random(n),
                    site_id="shop",
                    visitor_id=f"v{n}",
                    config=config,
                    now_ms=1_800_000_000_000,
                    explain=n % 5 == 0,
                    scorer=SlotScorer(frozen, offers) if scorer else None,
                )
                for scorer in (False, True)
            )
            assert at_once == one_by_one, f"round {round_}, decision {n}"
            compared += 1
            if one_by_one.offer is not None and one_by_one.features:
                clicked = rng.random() < (0.3 if one_by_one.offer.id < "offer-010" else 0.05)
                model.learn_one(
                    one_by_one.features, clicked, offer_id=one_by_one.offer.id, value=rng.random() * 80
                )
            if n == 500 and round_ == 2:
                model.restart_exploration(shrink=0.5)
    assert compared == 4800


def test_the_api_keeps_a_scorer_per_slot_until_the_model_or_catalogue_changes() -> None:
    rng = random.Random(3)
    small = random_catalogue(rng, AT_ONCE_FROM - 5).offers_for_slot(SLOT)
    large = random_catalogue(rng, AT_ONCE_FROM + 5).offers_for_slot(SLOT)
    assert len(small) < AT_ONCE_FROM <= len(large)
    scorers = SlotScorers()
    model, newer = ClickModel(), ClickModel()
    assert scorers.get(model, small) is None, "a small slot is cheaper one by one"
    first = scorers.get(model, large)
    assert first is not None and scorers.get(model, large) is first
    assert scorers.get(newer, large) is not first, "another model"
    current = scorers.get(newer, large)
    reloaded = tuple(list(large))  # the same offers from a reloaded catalogue: another tuple
    assert reloaded is not large and scorers.get(newer, reloaded) is not current


def test_made_up_categories_do_not_grow_a_scorer_without_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    # Page categories come from requests and interests from events: a stream of made-up ones
    # keeps the scorer's vectors at CACHED_VECTORS_MAX, and the decisions stay the same.
    monkeypatch.setattr(slot_scores, "CACHED_VECTORS_MAX", 5)
    rng = random.Random(8)
    catalogue = random_catalogue(rng, 20)
    model = ClickModel()
    for n in range(300):
        x = {f"offer-{n % 20:03d}": 1.0, f"offer-{n % 20:03d}|pcat=made-up-{n % 7}": 1.0}
        model.learn_one(x, n % 3 == 0, offer_id=f"offer-{n % 20:03d}")
    scorer = SlotScorer(model, catalogue.offers_for_slot(SLOT))
    for n in range(60):
        ctx = DecisionContext(interests={f"made-up-{n}": 4.0}, page_category=f"made-up-{n % 30}")
        one_by_one, at_once = (
            decide(
                catalogue,
                SLOT,
                ctx,
                model=model,
                rng=random.Random(n),
                site_id="s",
                visitor_id="v",
                scorer=chosen,
            )
            for chosen in (None, scorer)
        )
        assert at_once == one_by_one
    cached = (scorer._crosses, scorer._coarse, scorer._tallies)
    assert max(len(vectors) for vectors in cached) == 5
