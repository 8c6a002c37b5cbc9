"""Segments (pure logic): features, online learning, plain-data snapshots, stable ids."""

from __future__ import annotations

import random

import orjson

from tracker.models.profile import Profile
from tracker.models.segments import FEATURES, SegmentLearner, assign, match_ids, profile_features


def blobs(n: int, seed: int = 3) -> list[dict[str, float]]:
    """Three kinds of visitors: browsers, buyers, one-page visitors."""
    rng = random.Random(seed)
    centres = [
        {"pages": 2.5, "products": 3.0, "engagement": 2.5},
        {"pages": 2.0, "products": 2.0, "orders": 1.5, "revenue": 2.5, "carts": 1.5},
        {"pages": 0.7},
    ]
    return [
        {f: max(0.0, centres[i % 3].get(f, 0.0) + rng.gauss(0, 0.15)) for f in FEATURES} for i in range(n)
    ]


def trained(samples: list[dict[str, float]], clusters: int = 3) -> SegmentLearner:
    learner = SegmentLearner(clusters=clusters, seed=7)
    for x in samples:
        learner.learn(x)
    return learner


def test_features_are_plain_floats_of_a_fixed_set() -> None:
    profile = Profile.new("shop", "visitor-01")
    profile.counts = {"page_view": 3, "add_to_cart": 1}
    features = profile_features(profile)
    assert set(features) == set(FEATURES) and all(isinstance(v, float) for v in features.values())


def test_snapshot_is_json_and_assigns_like_the_learner() -> None:
    samples = blobs(900)
    learner = trained(samples)
    snapshot = orjson.loads(orjson.dumps(learner.snapshot(version=3, created_at=0)))
    assert snapshot["version"] == 3 and len(snapshot["centroids"]) == 3
    kinds = {assign(snapshot, x) for x in samples[:3]}
    assert len(kinds) == 3, "three clearly different kinds of visitors end in three segments"
    assert all(c["label"] for c in snapshot["centroids"].values())


def test_same_samples_and_seed_give_the_same_model() -> None:
    samples = blobs(300)
    a = trained(samples).snapshot(version=1, created_at=0)
    b = trained(samples).snapshot(version=1, created_at=0)
    assert a == b


def test_resuming_from_a_snapshot_keeps_segment_ids() -> None:
    samples = blobs(900)
    learner = trained(samples)
    snapshot = learner.snapshot(version=1, created_at=0)
    resumed = SegmentLearner.from_snapshot(snapshot, clusters=3, halflife=0.05, seed=99)
    for x in samples[:30]:
        assert resumed.learn(x) == assign(snapshot, x)


def test_a_learner_with_another_k_keeps_nearby_ids() -> None:
    mapping = match_ids({0: {"pages": 0.5}, 1: {"pages": 3.0}}, {0: {"pages": 2.9}, 1: {"pages": 0.6}})
    assert mapping == {0: 1, 1: 0}
    resumed = SegmentLearner.from_snapshot(
        trained(blobs(300)).snapshot(version=1, created_at=0), clusters=4, halflife=0.05, seed=1
    )
    assert sorted(resumed.centroids()) == [0, 1, 2, 3]
