"""Unit tests of the click model: learning, and snapshots that predict exactly as the writer did."""

from __future__ import annotations

import copy
import json
import random
import threading

import orjson
import pytest

from tracker.models.catalogue import load_catalogue
from tracker.models.features import DecisionContext, context_parts, offer_features
from tracker.models.learner import (
    SNAPSHOT_SCHEMA_VERSION,
    ClickModel,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
)
from tracker.settings import Settings

CATALOGUE = load_catalogue(Settings().catalogue_path)
OFFERS = CATALOGUE.offers_for_slot("home-hero")
CATEGORIES = ["shoes", "outdoor", "kitchen", "books", "electronics", "garden"]


def random_context(rng: random.Random) -> DecisionContext:
    return DecisionContext(
        interests={c: rng.uniform(0.1, 30) for c in rng.sample(CATEGORIES, rng.randint(0, 4))},
        segment=rng.choice([None, *range(6)]),
        is_returning=rng.random() < 0.5,
        device=rng.choice([None, "desktop", "mobile", "tablet"]),
        page_type=rng.choice([None, "home", "category", "product"]),
        page_category=rng.choice([None, *CATEGORIES]),
        cart_value=rng.choice([0.0, 20.0, 99.0, 300.0]),
        session_page_views=rng.randint(0, 12),
    )


def random_features(rng: random.Random) -> dict[str, float]:
    return offer_features(context_parts(random_context(rng)), rng.choice(OFFERS))


def trained(seed: int = 1, n: int = 3000) -> ClickModel:
    rng = random.Random(seed)
    model = ClickModel()
    for _ in range(n):
        x = random_features(rng)
        # A hidden rule to learn: shoes offers get clicked by segment 2.
        clicked = rng.random() < (
            0.3 if any(k.endswith("|seg=2") for k in x) and "shoes" in next(iter(x)) else 0.03
        )
        model.learn_one(x, clicked, offer_id=next(iter(x)), value=rng.choice([0.0, 50.0]))
    return model


def test_predictions_are_rivers_own_to_the_last_bit() -> None:
    # predict_one computes River's predict_proba_one without its per-call dict: the same float,
    # before and after learning (a River upgrade that changes the formula fails here).
    rng = random.Random(5)
    model = ClickModel()
    for n in range(3000):
        x = random_features(rng)
        assert model.predict_one(x) == model._lr.predict_proba_one(x)[True]
        model.learn_one(x, rng.random() < 0.2, offer_id=next(iter(x)))
        if n == 1500:
            model.restart_exploration(shrink=0.5)


def test_restored_snapshot_predicts_exactly_as_the_writer() -> None:
    writer = trained()
    for decode in (
        lambda raw: decode_snapshot(raw),
        lambda raw: ClickModel.from_snapshot(orjson.loads(raw)),
        lambda raw: ClickModel.from_snapshot(json.loads(raw.decode())),
    ):
        reader = decode(encode_snapshot(writer.to_snapshot(created_ms=1)))
        rng = random.Random(99)
        for _ in range(5000):
            x = random_features(rng)
            assert reader.predict_one(x) == writer.predict_one(x)  # equality, not approx
        assert reader.version == writer.version
        for offer in OFFERS:
            assert reader.value_per_click(offer.id) == writer.value_per_click(offer.id)


def test_a_restored_writer_keeps_learning_identically() -> None:
    original = trained(n=1000)
    resumed = ClickModel.from_snapshot(json.loads(encode_snapshot(original.to_snapshot())))
    rng_a, rng_b = random.Random(5), random.Random(5)
    for _ in range(1000):
        original.learn_one(random_features(rng_a), rng_a.random() < 0.1)
        resumed.learn_one(random_features(rng_b), rng_b.random() < 0.1)
    assert resumed.version == original.version
    rng = random.Random(7)
    for _ in range(500):
        x = random_features(rng)
        assert resumed.predict_one(x) == original.predict_one(x)


def test_a_published_snapshot_is_immune_to_later_learning() -> None:
    writer = trained(n=500)
    published = decode_snapshot(encode_snapshot(writer.to_snapshot()))
    probe = random_features(random.Random(3))
    before = published.predict_one(probe)
    for _ in range(200):
        writer.learn_one(probe, True)
    assert published.predict_one(probe) == before
    assert writer.predict_one(probe) > before
    assert writer.version != published.version


def test_version_swap_under_concurrent_reads() -> None:
    """Readers holding a model reference always see one whole version, never a mix."""
    rng = random.Random(11)
    probes = [random_features(rng) for _ in range(50)]
    versions = []
    writer = ClickModel()
    for _ in range(4):
        for _ in range(300):
            writer.learn_one(random_features(rng), rng.random() < 0.2)
        model = decode_snapshot(encode_snapshot(writer.to_snapshot()))
        versions.append((model, [model.predict_one(x) for x in probes]))
    expected = {model.version: predictions for model, predictions in versions}
    current = {"model": versions[0][0]}
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            model = current["model"]  # one read of the reference per request, as the API does
            got = [model.predict_one(x) for x in probes]
            if got != expected[model.version]:
                errors.append(model.version)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for i in range(400):
        current["model"] = versions[i % len(versions)][0]  # the pointer swap
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []


def test_learning_does_not_mutate_its_input_and_moves_the_right_way() -> None:
    model = ClickModel()
    x = {"run": 1.0, "run|seg=2": 1.0, "match": 0.4}
    frozen = copy.deepcopy(x)
    before = model.predict_one(x)
    p = model.learn_one(x, True)
    assert x == frozen
    assert p == before
    assert model.predict_one(x) > before
    model.learn_one(x, False)
    assert model.updates == 2 and model.clicks == 1


def test_same_data_same_model() -> None:
    assert trained(seed=4).to_snapshot() == trained(seed=4).to_snapshot()
    assert trained(seed=4).version != trained(seed=5).version


def test_snapshot_is_plain_json_with_a_schema_version() -> None:
    snapshot = trained(n=200).to_snapshot(created_ms=123, meta={"offsets": {"0": 41}})
    text = encode_snapshot(snapshot).decode()
    assert json.loads(text) == snapshot
    assert snapshot["schema_version"] == SNAPSHOT_SCHEMA_VERSION
    assert snapshot["schema"] == "tracker.click_model"
    assert snapshot["meta"] == {"offsets": {"0": 41}} and snapshot["created_ms"] == 123
    assert snapshot["version"].startswith(f"{200:010d}-")
    assert b"pickle" not in encode_snapshot(snapshot) and "\\u" not in text.split('"weights"')[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(schema="other"), "not a click-model snapshot"),
        (lambda s: s.update(schema_version=99), "layout 99 is not one this release reads"),
        (lambda s: s.update(features_version=0), "features version 0"),
        (lambda s: s["state"]["weights"].update(match=42.0), "content hashes to"),
        (lambda s: s.pop("state"), "malformed"),
    ],
)
def test_a_bad_snapshot_is_refused_with_a_reason(change, message: str) -> None:  # type: ignore[no-untyped-def]
    snapshot = trained(n=100).to_snapshot()
    change(snapshot)
    with pytest.raises(SnapshotError, match=message):
        ClickModel.from_snapshot(snapshot)


def test_undecodable_bytes_are_refused() -> None:
    with pytest.raises(SnapshotError, match="not JSON"):
        decode_snapshot(b"\x80\x04pickle")
    with pytest.raises(SnapshotError, match="not a JSON object"):
        decode_snapshot(b"[1, 2]")


def test_a_diverged_model_cannot_be_published() -> None:
    model = ClickModel()
    model._lr._weights["match"] = float("inf")
    with pytest.raises(SnapshotError, match=r"feature 'match'.*diverged"):
        model.to_snapshot()


def test_value_per_click_is_shrunk_towards_the_overall_value() -> None:
    model = ClickModel(value_prior_clicks=5.0)
    assert model.value_per_click("anything") == 0.0
    for _ in range(5):
        model.learn_one({"a": 1.0}, True, offer_id="a", value=100.0)
        model.learn_one({"b": 1.0}, True, offer_id="b", value=0.0)
    assert model.value_per_click("a") == pytest.approx((500 + 5 * 50) / 10)
    assert model.value_per_click("b") == pytest.approx((0 + 5 * 50) / 10)
    assert model.value_per_click("new") == pytest.approx(50.0)


def test_restart_exploration_is_part_of_the_snapshot() -> None:
    model = trained(n=300)
    model.restart_exploration(shrink=0.5)
    assert (model.restarts, model.exploration_age) == (1, 0)
    restored = ClickModel.from_snapshot(model.to_snapshot())
    assert (restored.restarts, restored.exploration_age) == (1, 0)
    model.learn_one({"x": 1.0}, False)
    assert model.exploration_age == 1


def test_tallies_count_each_offer_per_strongest_interest_and_survive_a_snapshot() -> None:
    model = ClickModel()
    shoes = offer_features(context_parts(DecisionContext(interests={"shoes": 9.0})), OFFERS[2])
    unknown = offer_features(context_parts(DecisionContext()), OFFERS[2])
    offer_id = OFFERS[2].id
    for clicked in (True, False, False, False):
        model.learn_one(shoes, clicked, offer_id=offer_id)
    model.learn_one(unknown, True, offer_id=offer_id)
    model.learn_one(shoes, True)  # no offer id: not tallied
    assert model.tally(f"{offer_id}|top=shoes") == (4.0, 1.0)
    assert model.tally(f"{offer_id}|top=-") == (1.0, 1.0)
    assert model.ceiling(f"{offer_id}|top=books", z=2.0) == 1.0, "never tried: anything is plausible"
    restored = decode_snapshot(encode_snapshot(model.to_snapshot()))
    assert restored.tally(f"{offer_id}|top=shoes") == (4.0, 1.0) and restored.version == model.version
    # Eighty more misses rule out a rate above 10 %; restarting exploration (drift) forgets them.
    # (Each ceiling is read before and after, as the policy does between updates: none is stale.)
    assert model.ceiling(f"{offer_id}|top=shoes", z=2.0) > 0.5, "one click in four: much is plausible"
    for _ in range(80):
        model.learn_one(shoes, False, offer_id=offer_id)
    assert model.ceiling(f"{offer_id}|top=shoes", z=2.0) < 0.1
    model.restart_exploration()
    assert model.tally(f"{offer_id}|top=shoes") == (0.0, 0.0)
    assert model.ceiling(f"{offer_id}|top=shoes", z=2.0) == 1.0


def test_an_offers_estimate_moves_from_the_prediction_to_its_own_record() -> None:
    model = ClickModel()
    key = "run|top=shoes"
    mean, upper = model.estimate(key, 0.03, prior_impressions=2.0, z=1.5)
    assert mean == pytest.approx(0.03), "no record: the prediction"
    assert upper > 0.3, "two impressions' worth of evidence: much is plausible"
    widths = []
    for i in range(400):
        model.learn_one({key: 1.0}, i % 5 == 0, offer_id="run")  # clicked one time in five
        if i + 1 in (20, 100, 400):
            mean, upper = model.estimate(key, 0.03, prior_impressions=2.0, z=1.5)
            widths.append(upper - mean)
    assert mean == pytest.approx((80 + 2 * 0.03) / 402), "its record, hardly the prediction"
    assert widths == sorted(widths, reverse=True) and widths[-1] < 0.04, "the bound closes in"
    assert model.estimate(key, 0.03, prior_impressions=2.0, z=0.0) == (mean, mean), "z 0: no optimism"
    assert model.estimate("new|top=-", 0.05, prior_impressions=0.0, z=1.5) == (0.05, 0.05)


def test_a_layout_1_snapshot_still_loads() -> None:
    """Snapshots published before the tallies existed (layout 1) load, with none."""
    model = ClickModel()
    x = {"run": 1.0, "match=interest": 0.5}
    for clicked in (True, False, False):
        model.learn_one(x, clicked)  # no offer id: no tallies, so the content is layout 1's
    snapshot = model.to_snapshot() | {"schema_version": 1}
    restored = ClickModel.from_snapshot(snapshot)
    assert restored.predict_one(x) == model.predict_one(x) and restored.tally("run|top=-") == (0.0, 0.0)
