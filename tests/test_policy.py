"""Unit tests of the decision policy: propensities, exploration, holdout, tie-breaking, cold start."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from tracker.models.caps import ImpressionCounts
from tracker.models.catalogue import Catalogue, parse_catalogue
from tracker.models.features import DecisionContext, context_from_profile, features_for, offer_features
from tracker.models.holdout import in_holdout
from tracker.models.learner import ClickModel
from tracker.models.policy import (
    REASON_EXPLORE,
    REASON_HOLDOUT,
    REASON_MODEL_UNAVAILABLE,
    REASON_NO_OFFER,
    Decision,
    PolicyConfig,
    action_probabilities,
    decide,
    fallback_decision,
)
from tracker.models.profile import Profile, apply_event
from tracker.schema import parse_event

SLOT = "home-hero"
NOW = 1_764_000_000_000
NO_HOLDOUT = PolicyConfig(holdout_percent=0.0)
GREEDY = PolicyConfig(holdout_percent=0.0, epsilon_start=0.0, epsilon_min=0.0, epsilon_restart=0.0)


def offer(offer_id: str, categories: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "id": offer_id,
        "slots": [SLOT],
        "categories": categories or [],
        "title": offer_id,
        "link": "/",
    } | fields


def catalogue(*offers: dict[str, Any]) -> Catalogue:
    return parse_catalogue({"offers": [offer("welcome", default=True), *offers]})


SHOP = catalogue(
    offer("run", ["shoes"], margin=0.3),
    offer("pan", ["kitchen"], margin=0.5),
    offer("tent", ["outdoor"]),
    offer("book", ["books"], devices=["desktop"]),
)


def run(ctx: DecisionContext, *, model: ClickModel | None = None, seed: int = 1, **kwargs: Any) -> Decision:
    kwargs.setdefault("config", NO_HOLDOUT)
    return decide(
        kwargs.pop("catalogue", SHOP),
        SLOT,
        ctx,
        model=ClickModel() if model is None else model,
        rng=random.Random(seed),
        site_id="shop",
        visitor_id=kwargs.pop("visitor_id", "visitor-0001"),
        now_ms=NOW,
        **kwargs,
    )


def biased_model(**offer_logits: float) -> ClickModel:
    """A model whose only knowledge is a fixed logit per offer (its bias feature)."""
    return ClickModel(priors=dict(offer_logits), intercept_init=0.0)


def random_context(rng: random.Random) -> DecisionContext:
    cats = ["shoes", "kitchen", "outdoor", "books"]
    return DecisionContext(
        interests={c: rng.uniform(0, 20) for c in rng.sample(cats, rng.randint(0, 3))},
        segment=rng.choice([None, 0, 1, 2]),
        is_returning=rng.random() < 0.5,
        device=rng.choice([None, "desktop", "mobile"]),
        page_type=rng.choice([None, "home", "product"]),
        page_category=rng.choice([None, *cats]),
        cart_value=rng.choice([0.0, 30.0, 400.0]),
        session_page_views=rng.randint(0, 9),
    )


# --- Propensities ------------------------------------------------------------------------------------


def test_propensities_sum_to_one_over_candidates_and_match_the_choice() -> None:
    rng = random.Random(5)
    model = ClickModel()
    for i in range(300):
        x = {"run": 1.0, "pan|seg=1": 1.0, "match": rng.random()}
        model.learn_one(x, rng.random() < 0.3)
        config = PolicyConfig(holdout_percent=rng.choice([0.0, 5.0, 50.0]))
        decision = run(random_context(rng), model=model, seed=i, config=config, visitor_id=f"visitor-{i:05d}")
        probabilities = [c.probability for c in decision.candidates if c.excluded is None]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-12)
        assert all(c.probability == 0.0 for c in decision.candidates if c.excluded is not None)
        assert decision.offer is not None
        chosen = next(c for c in decision.candidates if c.offer_id == decision.offer.id)
        assert decision.propensity == chosen.probability > 0


def test_choices_follow_the_stated_probabilities() -> None:
    model = biased_model(run=1.0, pan=0.5)
    ctx = DecisionContext(device="desktop")
    config = PolicyConfig(holdout_percent=0.0, epsilon_start=0.3, epsilon_min=0.3, epsilon_restart=0.3)
    rng = random.Random(11)
    n = 20_000
    seen: Counter[str] = Counter()
    expected: dict[str, float] = {}
    for _ in range(n):
        decision = decide(
            SHOP, SLOT, ctx, model=model, rng=rng, site_id="s", visitor_id="visitor-1", config=config
        )
        assert decision.offer is not None
        seen[decision.offer.id] += 1
        expected = {c.offer_id: c.probability for c in decision.candidates if c.excluded is None}
    assert expected["run"] == pytest.approx(0.7 + 0.3 / 5)
    for offer_id, probability in expected.items():
        # 20,000 draws: a standard error under 0.0035; four of them is a failure, not noise.
        assert seen[offer_id] / n == pytest.approx(probability, abs=0.014), offer_id


def test_single_candidate_has_propensity_one_and_no_exploration() -> None:
    only = parse_catalogue({"offers": [offer("welcome", default=True)]})
    decision = run(
        DecisionContext(), catalogue=only, config=PolicyConfig(holdout_percent=0, epsilon_start=1.0)
    )
    assert decision.offer is not None and decision.offer.id == "welcome"
    assert (decision.propensity, decision.explored) == (1.0, False)


def test_explored_decisions_say_so() -> None:
    config = PolicyConfig(holdout_percent=0.0, epsilon_start=1.0, epsilon_min=1.0, epsilon_restart=1.0)
    decisions = [run(DecisionContext(), seed=s, config=config) for s in range(50)]
    assert all(d.explored and d.reason == REASON_EXPLORE and not d.personalised for d in decisions)
    assert all(d.propensity == pytest.approx(1 / 4) for d in decisions), "book is desktop-only: 4 candidates"
    assert len({d.offer.id for d in decisions if d.offer}) == 4


def test_same_seed_same_decisions() -> None:
    rng = random.Random(3)
    contexts = [random_context(rng) for _ in range(200)]
    first = [run(ctx, seed=i).offer for i, ctx in enumerate(contexts)]
    second = [run(ctx, seed=i).offer for i, ctx in enumerate(contexts)]
    assert first == second


def test_action_probabilities_match_decide() -> None:
    model = biased_model(run=0.2, tent=0.4)
    rng = random.Random(9)
    for i in range(50):
        ctx = random_context(rng)
        decision = run(ctx, model=model, seed=i)
        eligible = [c.offer_id for c in decision.candidates if c.excluded is None]
        probabilities = action_probabilities(SHOP, eligible, ctx, model, NO_HOLDOUT)
        assert probabilities == {c.offer_id: c.probability for c in decision.candidates if c.excluded is None}


# --- Ranking -------------------------------------------------------------------------------------------


def test_margin_only_breaks_near_ties() -> None:
    # pan has margin 0.5 (score x1.01 with margin_weight 0.02), run 0.3 (x1.006).
    near = biased_model(run=0.0, pan=-0.003, tent=-5, book=-5, welcome=-5)
    assert run(DecisionContext(), model=near, config=GREEDY).offer.id == "pan"  # type: ignore[union-attr]
    far = biased_model(run=0.0, pan=-0.05, tent=-5, book=-5, welcome=-5)
    assert run(DecisionContext(), model=far, config=GREEDY).offer.id == "run"  # type: ignore[union-attr]
    unbounded = PolicyConfig(holdout_percent=0.0, epsilon_start=0.0, epsilon_min=0.0, margin_weight=0.5)
    assert run(DecisionContext(), model=far, config=unbounded).offer.id == "pan"  # type: ignore[union-attr]


def test_exact_ties_go_to_priority_then_id() -> None:
    cat = catalogue(offer("b", ["x"], priority=1), offer("a", ["x"]), offer("c", ["x"], priority=1))
    model = ClickModel(priors={}, intercept_init=0.0)
    decision = run(DecisionContext(), catalogue=cat, model=model, config=GREEDY)
    assert decision.offer is not None and decision.offer.id == "b"


def test_value_weight_prefers_offers_whose_clicks_convert() -> None:
    model = biased_model(run=0.0, pan=0.0, tent=-5, book=-5, welcome=-5)
    for _ in range(20):
        model.learn_one({"zz": 0.0}, True, offer_id="run", value=200.0)
        model.learn_one({"zz": 0.0}, True, offer_id="pan", value=0.0)
    assert model.value_per_click("run") > model.value_per_click("pan")
    by_clicks = run(DecisionContext(), model=model, config=GREEDY)
    assert by_clicks.offer is not None and by_clicks.offer.id == "pan", "margin decides between equal clicks"
    valued = PolicyConfig(holdout_percent=0.0, epsilon_start=0.0, epsilon_min=0.0, value_weight=0.01)
    by_value = run(DecisionContext(), model=model, config=valued)
    assert by_value.offer is not None and by_value.offer.id == "run"


def test_cold_start_follows_interests_and_page_then_learning_takes_over() -> None:
    model = ClickModel()
    shoes_fan = DecisionContext(interests={"shoes": 15.0, "books": 2.0}, segment=3)
    decision = run(shoes_fan, model=model, config=GREEDY)
    assert decision.offer is not None and decision.offer.id == "run"
    assert decision.reason == "interest:shoes" and decision.personalised
    on_kitchen_page = DecisionContext(page_category="kitchen")
    page_decision = run(on_kitchen_page, model=model, config=GREEDY)
    assert page_decision.offer is not None and page_decision.offer.id == "pan"
    assert page_decision.reason == "page:kitchen" and not page_decision.personalised, "no profile yet"
    # Segment 3 turns out to love tents (and book lovers do not): the model learns it and follows.
    book_fan = DecisionContext(interests={"books": 15.0}, segment=1)
    for _ in range(300):
        model.learn_one(features_for(shoes_fan, _offer("tent")), True)
        model.learn_one(features_for(shoes_fan, _offer("run")), False)
        model.learn_one(features_for(book_fan, _offer("tent")), False)
    learned = run(shoes_fan, model=model, config=GREEDY)
    assert learned.offer is not None and learned.offer.id == "tent"
    assert learned.reason in ("segment:3", "interest:shoes")
    assert run(book_fan, model=model, config=GREEDY).offer.id != "tent"  # type: ignore[union-attr]


def _offer(offer_id: str) -> Any:
    found = SHOP.get(offer_id)
    assert found is not None
    return found


def test_a_brand_new_visitor_gets_the_popular_choice() -> None:
    model = biased_model(tent=1.0)
    decision = run(DecisionContext(), model=model, config=GREEDY)
    assert decision.offer is not None and decision.offer.id == "tent"
    assert decision.reason == "popular" and not decision.personalised


# --- Holdout, fallbacks, rules ---------------------------------------------------------------------------


def test_holdout_is_sticky_and_about_the_configured_share() -> None:
    config = PolicyConfig(holdout_percent=5.0, holdout_salt="exp-1")
    members = [f"visitor-{i:06d}" for i in range(20_000)]
    flagged = {v for v in members if in_holdout("shop", v, percent=5.0, salt="exp-1")}
    assert 0.045 <= len(flagged) / len(members) <= 0.055
    rng = random.Random(2)
    for visitor in list(flagged)[:30] + members[:30]:
        decisions = [run(random_context(rng), seed=s, config=config, visitor_id=visitor) for s in range(5)]
        assert {d.holdout for d in decisions} == {visitor in flagged}
    reshuffled = {v for v in members if in_holdout("shop", v, percent=5.0, salt="exp-2")}
    assert len(flagged & reshuffled) < len(flagged) / 4, "a new salt draws a new group"
    assert not any(in_holdout("shop", v, percent=0.0, salt="x") for v in members[:1000])


def test_holdout_gets_the_default_flagged_with_propensity_one() -> None:
    visitor = next(
        f"visitor-{i:05d}"
        for i in range(1000)
        if in_holdout("shop", f"visitor-{i:05d}", percent=5.0, salt="v1")
    )
    decision = run(
        DecisionContext(interests={"shoes": 30.0}),
        config=PolicyConfig(holdout_percent=5.0),
        visitor_id=visitor,
    )
    assert decision.offer is not None and decision.offer.id == "welcome"
    assert (decision.holdout, decision.personalised, decision.reason, decision.propensity) == (
        True,
        False,
        REASON_HOLDOUT,
        1.0,
    )
    assert decision.log_record()["holdout"] is True


def test_no_model_means_the_default() -> None:
    decision = decide(
        SHOP, SLOT, DecisionContext(interests={"shoes": 9.0}), model=None, rng=random.Random(1), site_id="s",
        visitor_id="visitor-1", config=NO_HOLDOUT,
    )  # fmt: skip
    assert decision.offer is not None and decision.offer.id == "welcome"
    assert (decision.reason, decision.propensity, decision.model_version) == (
        REASON_MODEL_UNAVAILABLE,
        1.0,
        None,
    )
    fallback = fallback_decision(SHOP, SLOT, DecisionContext(), reason="redis_unavailable", now_ms=NOW)
    assert (
        fallback.offer is not None
        and fallback.offer.id == "welcome"
        and fallback.reason == "redis_unavailable"
    )


def test_rules_and_caps_are_applied_before_the_model() -> None:
    cat = catalogue(
        offer("run", ["shoes"], caps={"per_session": 1}), offer("pan", ["kitchen"], devices=["mobile"])
    )
    model = biased_model(run=5.0, pan=9.0)
    counts = ImpressionCounts()
    ctx = DecisionContext(device="desktop", session_id="s1")
    first = run(ctx, catalogue=cat, model=model, config=GREEDY, counts=counts)
    assert first.offer is not None and first.offer.id == "run"
    counts.record("run", at_ms=NOW, session_id="s1", decision_id="d1")
    second = run(ctx, catalogue=cat, model=model, config=GREEDY, counts=counts)
    assert second.offer is not None and second.offer.id == "welcome"
    assert {c.offer_id: c.excluded for c in second.candidates} == {
        "welcome": None,
        "run": "cap_session",
        "pan": "device",
    }


def test_unknown_slot_gives_no_offer() -> None:
    decision = decide(
        SHOP, "nowhere", DecisionContext(), model=ClickModel(), rng=random.Random(1), site_id="s",
        visitor_id="visitor-1",
    )  # fmt: skip
    assert (decision.offer, decision.reason, decision.propensity, decision.candidates) == (
        None,
        REASON_NO_OFFER,
        0.0,
        (),
    )


# --- Explain and log --------------------------------------------------------------------------------------


def test_explain_lists_scores_contributions_and_exclusions() -> None:
    model = ClickModel()
    decision = run(DecisionContext(interests={"shoes": 9.0}, device="mobile"), model=model, explain=True)
    view = json.loads(json.dumps(decision.explain()))
    assert view["model_version"] == model.version
    by_id = {c["offer_id"]: c for c in view["candidates"]}
    assert by_id["book"]["excluded"] == "device" and by_id["book"]["score"] is None
    assert by_id["run"]["p_click"] > by_id["tent"]["p_click"]
    assert ["match=interest", pytest.approx(2.0 * 0.75)] in by_id["run"]["contributions"]
    scores = [c["score"] for c in view["candidates"] if c["excluded"] is None]
    assert scores == sorted(scores, reverse=True), "candidates are listed best first"


def test_log_record_carries_what_learning_and_offline_evaluation_need() -> None:
    ctx = DecisionContext(interests={"shoes": 9.0}, segment=2, page_category="shoes", session_id="s9")
    decision = run(ctx)
    record = json.loads(json.dumps(decision.log_record()))
    assert record["offer_id"] == decision.offer.id  # type: ignore[union-attr]
    assert record["propensity"] == decision.propensity
    assert record["features"] == decision.features == features_for(ctx, decision.offer)  # type: ignore[arg-type]
    assert DecisionContext.from_dict(record["context"]) == ctx
    assert set(record["eligible"]) == {"welcome", "run", "pan", "tent"}
    assert record["model_version"] == ClickModel().version


def test_restarted_exploration_explores_harder() -> None:
    model = ClickModel()
    for _ in range(50_000 // 100):
        model.learn_one({"x": 1.0}, False)
    config = PolicyConfig(holdout_percent=0.0)
    before = run(DecisionContext(), model=model, config=config).epsilon
    model.restart_exploration()
    after = run(DecisionContext(), model=model, config=config).epsilon
    assert before < config.epsilon_start and after == pytest.approx(config.epsilon_restart)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"epsilon_start": 0.01, "epsilon_min": 0.1}, "epsilon_min"),
        ({"epsilon_decay_updates": 0}, "epsilon_decay_updates"),
        ({"margin_weight": 0.9}, "tie-breaker"),
        ({"holdout_percent": 101}, "holdout_percent"),
        ({"value_weight": -1}, "value_weight"),
        ({"optimism_z": -1}, "optimism_z"),
        ({"prior_impressions": -1}, "prior_impressions"),
    ],
)
def test_policy_config_refuses_unsafe_values(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicyConfig(**fields)


# --- Context from a profile --------------------------------------------------------------------------------


def _event(kind: str, ts: int, **fields: Any) -> Any:
    event_id = str(uuid.UUID(int=random.Random(ts).getrandbits(128), version=4))
    return parse_event(
        {"event_id": event_id, "type": kind, "ts": ts, "site_id": "shop", "visitor_id": "visitor-0001",
         "session_id": "sess-0001"} | fields
    )  # fmt: skip


def test_context_from_a_real_profile() -> None:
    profile = Profile.new("shop", "visitor-0001")
    for i in range(3):
        apply_event(
            profile, _event("product_view", NOW + i, product_id=f"p{i}", category="shoes"),
            received_at=NOW + i, half_life_seconds=3600, dedupe_window=8,
        )  # fmt: skip
    profile.segment = 4
    ctx = context_from_profile(
        profile,
        now_ms=NOW + 1000,
        half_life_seconds=3600,
        device="mobile",
        page_path="/p/p2",
        page_category="shoes",
    )
    assert ctx.segment == 4 and not ctx.is_returning and ctx.session_id is not None
    assert ctx.interests["shoes"] == pytest.approx(9.0, rel=1e-3)
    later = context_from_profile(profile, now_ms=NOW + 3 * 3_600_000, half_life_seconds=3600)
    assert later.is_returning and later.session_id is None and later.session_page_views == 0
    assert context_from_profile(None, now_ms=NOW, half_life_seconds=3600, device="tablet") == DecisionContext(
        device="tablet"
    )


def test_offer_features_are_small_and_leave_the_context_alone() -> None:
    ctx = DecisionContext(interests={"shoes": 9.0, "books": 3.0, "garden": 1.0, "tools": 0.5}, segment=1)
    before = dict(ctx.interests)
    run_offer = SHOP.get("run")
    assert run_offer is not None
    x = features_for(ctx, run_offer)
    assert len(x) <= 16
    assert x["run|top=shoes"] == 1.0 and "run|int=tools" not in x, "only the top 3 interests are crossed"
    assert x["c=shoes|cart=0"] == 1.0 and x["c=shoes|depth=1"] == 1.0
    assert ctx.interests == before
    welcome = SHOP.get("welcome")
    assert welcome is not None and "match=interest" not in offer_features_for(ctx, welcome)


def offer_features_for(ctx: DecisionContext, item: Any) -> dict[str, float]:
    from tracker.models.features import context_parts

    return offer_features(context_parts(ctx), item)


def test_package_exports_are_pinned_and_lazy() -> None:
    import subprocess
    import sys

    import tracker.models as models

    assert models.__all__ == sorted(models.__all__)
    for name in models.__all__:
        assert getattr(models, name) is not None, name
    assert models.decide is decide and models.ClickModel is ClickModel
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        models.nope  # noqa: B018
    # Importing the package (as the profile worker does) does not import River.
    code = "import sys, tracker.models.profile; print('river' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_configs_come_from_settings() -> None:
    from tracker.models.rewards import AttributionConfig
    from tracker.models.trainer import Trainer
    from tracker.settings import Settings

    settings = Settings(holdout_percent=2.5, explore_epsilon_start=0.3, attribution_window_seconds=60)
    config = PolicyConfig.from_settings(settings)
    assert (config.holdout_percent, config.epsilon_start, config.epsilon_min) == (2.5, 0.3, 0.02)
    assert PolicyConfig.from_settings(Settings()) == PolicyConfig(), "the defaults agree"
    assert AttributionConfig.from_settings(settings).window_ms == 60_000
    assert Trainer.options_from(Settings()) == {"publish_every_updates": 1_000, "publish_every_ms": 10_000}


def test_defaults_carry_features_only_when_the_context_is_known() -> None:
    ctx = DecisionContext(interests={"shoes": 5.0})
    unavailable = decide(
        SHOP,
        SLOT,
        ctx,
        model=None,
        rng=random.Random(1),
        site_id="s",
        visitor_id="visitor-1",
        config=NO_HOLDOUT,
    )
    assert unavailable.offer is not None
    assert unavailable.features == features_for(ctx, unavailable.offer), "learnable: the context is real"
    fallback = fallback_decision(SHOP, SLOT, DecisionContext(), reason="redis_unavailable", now_ms=NOW)
    assert fallback.features == {}, "Redis was down: the visitor only looks new, so nothing to learn"


# --- Exploration that rules offers out ----------------------------------------------------------------


def test_exploration_spends_little_on_offers_ruled_out_for_this_kind_of_visitor() -> None:
    """pan was shown 60 times to shoe lovers and never clicked: it cannot plausibly beat run's
    estimate for them, so exploration gives it a tenth of a plausible offer's share; for book
    lovers nothing was learned yet, and exploration stays uniform."""
    model = biased_model(run=-1.5, pan=-2.0, tent=-2.0, book=-2.0, welcome=-2.0)
    shoe_lover = DecisionContext(interests={"shoes": 9.0}, device="desktop")
    pan = SHOP.get("pan")
    assert pan is not None
    for _ in range(60):
        model.learn_one(features_for(shoe_lover, pan), False, offer_id="pan")
    config = PolicyConfig(holdout_percent=0.0, epsilon_start=0.5, epsilon_min=0.5, epsilon_restart=0.5)

    decision = run(shoe_lover, model=model, config=config)
    by_offer = {c.offer_id: c.probability for c in decision.candidates}
    assert sum(by_offer.values()) == pytest.approx(1.0)
    assert by_offer["pan"] == pytest.approx(by_offer["tent"] / 10)
    assert by_offer["tent"] == by_offer["book"] == by_offer["welcome"]
    assert by_offer["run"] == pytest.approx(0.5 + by_offer["tent"])
    eligible = [c.offer_id for c in decision.candidates if c.excluded is None]
    assert action_probabilities(SHOP, eligible, shoe_lover, model, config) == by_offer

    book_lover = DecisionContext(interests={"books": 9.0}, device="desktop")
    uniform = {c.probability for c in run(book_lover, model=model, config=config).candidates}
    assert len(uniform) == 2, "the greedy offer and four equal shares"

    # The draws follow the stated probabilities.
    shown = Counter(run(shoe_lover, model=model, config=config, seed=s).offer.id for s in range(3000))  # type: ignore[union-attr]
    assert shown["pan"] / 3000 == pytest.approx(by_offer["pan"], abs=0.01)
    assert shown["tent"] / 3000 == pytest.approx(by_offer["tent"], abs=0.03)


def test_an_offers_own_record_with_this_kind_of_visitor_overrides_the_shared_weights() -> None:
    """tent is poor for most visitors (its shared weights say so), but shoe lovers clicked it
    a fifth of the time: for them it beats run, which they click less; for book lovers, with
    whom tent has no record, the model's prediction is the estimate."""
    model = biased_model(run=-2.0, pan=-4.0, tent=-4.0, book=-4.0, welcome=-4.0)
    shoe_lover = DecisionContext(interests={"shoes": 9.0}, device="desktop")
    book_lover = DecisionContext(interests={"books": 9.0}, device="desktop")
    run_offer, tent = SHOP.get("run"), SHOP.get("tent")
    assert run_offer is not None and tent is not None
    for i in range(300):
        model.learn_one(features_for(shoe_lover, tent), i % 5 == 0, offer_id="tent")
        model.learn_one(features_for(shoe_lover, run_offer), i % 10 == 0, offer_id="run")
    model = ClickModel.from_snapshot(model.to_snapshot())  # as the API reads it
    by_estimate = replace(GREEDY, optimism_z=0.0)  # untried offers aside (see the next test)
    decision = run(shoe_lover, model=model, config=by_estimate)
    assert decision.offer is not None and decision.offer.id == "tent"
    by_offer = {c.offer_id: c for c in decision.candidates}
    assert by_offer["tent"].p_click == pytest.approx(0.2, abs=0.01)
    assert by_offer["run"].p_click == pytest.approx(0.1, abs=0.01)
    for_books = {c.offer_id: c.p_click for c in run(book_lover, model=model, config=by_estimate).candidates}
    assert for_books["tent"] == model.predict_one(features_for(book_lover, tent)), "no record: the model"


def test_optimism_tries_a_promising_offer_until_its_record_tells() -> None:
    """run has a long record at 10 % with shoe lovers, tent, book and welcome long records of
    misses; pan, predicted a little lower than run, has none: ranked by its optimistic bound
    it is shown (deterministically, so the propensity stays exact); after a record of misses
    it drops out. With optimism off the estimate alone ranks: run."""
    model = biased_model(run=-2.2, pan=-2.4, tent=-2.4, book=-2.4, welcome=-2.4)
    shoe_lover = DecisionContext(interests={"shoes": 9.0}, device="desktop")
    run_offer, pan = SHOP.get("run"), SHOP.get("pan")
    assert run_offer is not None and pan is not None
    for i in range(500):
        model.learn_one(features_for(shoe_lover, run_offer), i % 10 == 0, offer_id="run")
    for other in ("tent", "book", "welcome"):
        other_offer = SHOP.get(other)
        assert other_offer is not None
        for _ in range(60):
            model.learn_one(features_for(shoe_lover, other_offer), False, offer_id=other)
    first = run(shoe_lover, model=model, config=GREEDY)
    assert first.offer is not None and first.offer.id == "pan" and not first.explored
    assert first.propensity == 1.0
    by_offer = {c.offer_id: c for c in first.candidates}
    assert by_offer["pan"].p_click < by_offer["run"].p_click < by_offer["pan"].score
    no_optimism = replace(GREEDY, optimism_z=0.0)
    assert run(shoe_lover, model=model, config=no_optimism).offer.id == "run"  # type: ignore[union-attr]
    for _ in range(60):
        model.learn_one(features_for(shoe_lover, pan), False, offer_id="pan")
    assert run(shoe_lover, model=model, config=GREEDY).offer.id == "run"  # type: ignore[union-attr]


def test_ruled_out_offers_keep_a_chance() -> None:
    with pytest.raises(ValueError, match="every candidate keeps a chance"):
        PolicyConfig(ruled_out_weight=0.0)
    uniform = PolicyConfig(
        holdout_percent=0.0, epsilon_start=0.5, epsilon_min=0.5, epsilon_restart=0.5, ceiling_z=0.0
    )
    model = biased_model(run=-1.5, pan=-2.0)
    shoe_lover = DecisionContext(interests={"shoes": 9.0}, device="desktop")
    pan = SHOP.get("pan")
    assert pan is not None
    for _ in range(60):
        model.learn_one(features_for(shoe_lover, pan), False, offer_id="pan")
    assert len({c.probability for c in run(shoe_lover, model=model, config=uniform).candidates}) == 2
