"""Behavioural tests of the learning simulator: the policy learns, the world is what it says."""

from __future__ import annotations

import random

import pytest

from tracker.models.catalogue import load_catalogue
from tracker.settings import Settings
from tracker.sim.ground_truth import CROSS, HIGH, LOW, MOBILE_FACTOR, GroundTruth
from tracker.sim.learning import LearningConfig, run_learning
from tracker.sim.shoppers import Crowd, segment_purity

CATALOGUE = load_catalogue(Settings().catalogue_path)
SLOT = "home-hero"


@pytest.fixture(scope="module")
def short_run() -> dict:
    # A fixed seed and no drift: 6,000 impressions, about three seconds.
    return run_learning(
        LearningConfig(seed=1, impressions=6_000, drift_at=None, checkpoint=4_000, checkpoint_span=2_000)
    )


def test_the_learner_beats_random_by_a_clear_margin(short_run: dict) -> None:
    checkpoint = short_run["checkpoint"]
    ctr = {name: figures["expected_ctr"] for name, figures in checkpoint["ctr"].items()}
    realised = {name: figures["ctr"] for name, figures in checkpoint["ctr"].items()}
    assert checkpoint["window"] == [4_000, 6_000]
    assert checkpoint["vs_random"] >= 1.8
    assert realised["ours"] >= 1.5 * realised["random"], "clicks actually counted, not only expected"
    # It also beats showing everyone the most popular offer, and the rule-based ranking it replaces.
    assert ctr["ours"] > ctr["popular"] and ctr["ours"] > ctr["rules"]
    assert ctr["ours"] < ctr["oracle"]


def test_the_learning_curve_rises(short_run: dict) -> None:
    curve = [point["expected_ctr"] for point in short_run["curves"]["ours"]]
    assert len(curve) == 6
    assert sum(curve[-2:]) / 2 > curve[0] * 1.15


def test_personalised_decisions_beat_the_holdout(short_run: dict) -> None:
    lift = short_run["lift"]
    assert lift["holdout"]["impressions"] > 50
    assert lift["personalised"]["expected_ctr"] > 1.5 * lift["holdout"]["expected_ctr"]
    assert lift["expected_lift"] > 0.5


def test_snapshots_are_published_as_the_service_would(short_run: dict) -> None:
    assert short_run["snapshots_published"] > 10
    assert short_run["model"].split("-")[0].isdigit()


def test_same_seed_same_report() -> None:
    config = LearningConfig(seed=3, impressions=1_500, drift_at=1_000, checkpoint=1_000, window=500)
    first, second = run_learning(config), run_learning(config)
    assert first == second
    assert first["drift"]["at"] == 1_000


def test_ground_truth_types_and_drift() -> None:
    truth = GroundTruth(CATALOGUE, SLOT, seed=4, drift_at=100)
    assert {t.favourite for t in truth.types} == {
        "shoes",
        "outdoor",
        "kitchen",
        "books",
        "electronics",
        "garden",
    }
    for vtype in truth.types:
        before = truth.cross_sell(vtype, drifted=False)
        after = truth.cross_sell(vtype, drifted=True)
        assert before != after, "the drift moves every type's favourite offer"
        offer = CATALOGUE.get(before)
        assert offer is not None and vtype.favourite not in offer.categories, (
            "a cross-sell, not the obvious offer"
        )
        p = truth.p_click(vtype, before, device="desktop", returning=True, impressions=0)
        assert CROSS[0] <= p <= CROSS[1]
        assert (
            truth.p_click(vtype, before, device="mobile", returning=True, impressions=0) == p * MOBILE_FACTOR
        )
        assert truth.p_click(vtype, before, device="desktop", returning=True, impressions=100) <= LOW[1]
        favourite = next(o for o in CATALOGUE.offers_for_slot(SLOT) if vtype.favourite in o.categories)
        assert HIGH[0] <= truth.p_click(vtype, favourite.id, device="desktop", returning=True, impressions=0)


def test_shoppers_mostly_browse_their_favourite_and_come_back() -> None:
    truth = GroundTruth(CATALOGUE, SLOT, seed=4)
    crowd = Crowd(truth, random.Random(8))
    now = 1_764_000_000_000
    contexts = []
    for _ in range(3_000):
        now += 2_000
        shopper, ctx = crowd.next_visit(now)
        contexts.append((shopper, ctx))
    favourite_pages = sum(ctx.page_category == s.vtype.favourite for s, ctx in contexts)
    assert 0.6 < favourite_pages / len(contexts) < 0.85
    assert any(ctx.is_returning for _, ctx in contexts) and any(not ctx.is_returning for _, ctx in contexts)
    # Segments are learned as the worker learns them: they find the hidden types, mostly.
    with_segment = [(s, ctx) for s, ctx in contexts if ctx.segment is not None]
    assert len(with_segment) > 2_500
    purity = segment_purity(crowd.shoppers, {s.visitor_id: s.profile.segment for s in crowd.shoppers})
    assert purity["unsegmented"] == 0 and purity["weighted_purity"] > 0.7
    assert len(purity["by_segment"]) == len(truth.types)
