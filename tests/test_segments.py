"""Segments (pure logic): features, online learning, plain-data snapshots, stable ids."""

from __future__ import annotations

import random

import orjson
import pytest

from tracker.models.profile import Interest, Profile
from tracker.models.segments import (
    FEATURES,
    INTEREST_SCALE,
    TOP_INTERESTS,
    SegmentLearner,
    assign,
    match_ids,
    profile_features,
)


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


def test_features_hold_the_share_of_the_strongest_interests() -> None:
    profile = Profile.new("shop", "visitor-01")
    profile.last_seen = 1_000
    scores = {"shoes": 6.0, "books": 2.0, "garden": 1.0, "tools": 0.5, "toys": 0.5}
    profile.interests = {c: Interest(s, 1_000) for c, s in scores.items()}
    features = profile_features(profile)
    shares = {k: v for k, v in features.items() if k.startswith("interest:")}
    assert len(shares) == TOP_INTERESTS and set(features) - set(shares) == set(FEATURES)
    assert shares["interest:shoes"] == pytest.approx(INTEREST_SCALE * 6.0 / 10.0)
    assert "interest:tools" not in shares


def shopper(rng: random.Random, favourite: str, other: str) -> dict[str, float]:
    """A profile's features: volumes drawn alike whatever the visitor likes; interest in
    ``favourite`` mostly."""
    profile = Profile.new("shop", f"v{rng.getrandbits(32)}")
    profile.counts = {"page_view": rng.randint(2, 30), "product_view": rng.randint(2, 30)}
    profile.sessions = rng.randint(1, 4)
    profile.interests = {favourite: Interest(rng.uniform(6, 10), 0), other: Interest(rng.uniform(0, 3), 0)}
    return profile_features(profile)


def test_same_volumes_but_other_interests_land_in_other_segments() -> None:
    rng = random.Random(5)
    kinds = [("shoes", "books"), ("books", "garden"), ("garden", "shoes")]
    learner = SegmentLearner(clusters=3, seed=11)
    for i in range(900):
        learner.learn(shopper(rng, *kinds[i % 3]))
    snapshot = orjson.loads(orjson.dumps(learner.snapshot(version=1, created_at=0)))
    assert {f"interest:{c}" for c, _ in kinds} <= set(snapshot["features"])
    # The same volumes exactly, only the interests differ.
    shoes, books = Profile.new("shop", "a"), Profile.new("shop", "b")
    for profile, favourite in ((shoes, "shoes"), (books, "books")):
        profile.counts, profile.sessions = {"page_view": 8, "product_view": 12}, 2
        profile.interests = {favourite: Interest(9.0, 0)}
    assert assign(snapshot, profile_features(shoes)) != assign(snapshot, profile_features(books))
    # Each kind of visitor ends in a segment of its own.
    for favourite, other in kinds:
        segments = {assign(snapshot, shopper(rng, favourite, other)) for _ in range(50)}
        assert len(segments) == 1, (favourite, segments)
    assert len({assign(snapshot, shopper(rng, *kind)) for kind in kinds}) == 3


def test_a_category_the_model_has_not_seen_does_not_change_the_segment() -> None:
    snapshot = trained(blobs(300)).snapshot(version=1, created_at=0)
    for x in blobs(30, seed=9):
        assert assign(snapshot, x | {"interest:new-category": 3.0}) == assign(snapshot, x)


def test_faint_categories_are_forgotten() -> None:
    learner = SegmentLearner(clusters=2, seed=3)
    rng = random.Random(2)
    for i in range(200):
        fad = {"interest:fad": 1.0 if i < 45 else 0.0}
        learner.learn(shopper(rng, "shoes" if i % 2 else "books", "garden") | fad)
    assert "interest:fad" in learner.snapshot(version=1, created_at=0)["features"]
    for i in range(600):
        learner.learn(shopper(rng, "shoes" if i % 2 else "books", "garden"))
    assert "interest:fad" not in learner.snapshot(version=2, created_at=0)["features"]


def test_snapshots_published_during_the_warm_up_keep_their_ids() -> None:
    samples = blobs(60)
    learner = trained(samples[:30])  # warm-up: 3 clusters x 20 samples
    early = learner.snapshot(version=1, created_at=0)
    for x in samples[30:]:
        learner.learn(x)
    late = learner.snapshot(version=2, created_at=0)
    assert [assign(early, x) for x in samples] == [assign(late, x) for x in samples]


def test_a_snapshot_of_the_old_schema_is_ignored() -> None:
    snapshot = trained(blobs(300)).snapshot(version=4, created_at=0) | {"schema": 1}
    fresh = SegmentLearner.from_snapshot(snapshot, clusters=3, halflife=0.05, seed=7)
    assert fresh.samples == 0


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
