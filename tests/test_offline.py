"""Offline evaluation (IPS, SNIPS) checked against the simulator's ground truth."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping

import pytest

from tracker.models.catalogue import load_catalogue
from tracker.models.features import DecisionContext
from tracker.models.learner import ClickModel
from tracker.models.offline import Estimate, Logged, deterministic, ips, snips
from tracker.models.policy import PolicyConfig, action_probabilities, decide
from tracker.settings import Settings
from tracker.sim.ground_truth import GroundTruth
from tracker.sim.shoppers import Crowd

SLOT = "home-hero"
CATALOGUE = load_catalogue(Settings().catalogue_path)
LOGGING = PolicyConfig(holdout_percent=0.0, epsilon_start=0.5, epsilon_min=0.5, epsilon_restart=0.5)


def logged_world(
    n: int = 8000, seed: int = 23
) -> tuple[list[Logged], list[Callable[[str], float]], list[dict]]:
    """Decisions logged by an exploring policy, each with its true click probability per offer."""
    truth = GroundTruth(CATALOGUE, SLOT, seed=seed)
    crowd = Crowd(truth, random.Random(seed))
    rng = random.Random(seed + 1)
    model = ClickModel()
    logs: list[Logged] = []
    truths: list[Callable[[str], float]] = []
    records: list[dict] = []
    now = 1_764_000_000_000
    for _ in range(n):
        now += 2000
        shopper, ctx = crowd.next_visit(now)
        decision = decide(
            CATALOGUE,
            SLOT,
            ctx,
            model=model,
            rng=rng,
            site_id="demo",
            visitor_id=shopper.visitor_id,
            config=LOGGING,
        )
        assert decision.offer is not None

        def p_true(offer_id: str, shopper=shopper, ctx=ctx) -> float:  # type: ignore[no-untyped-def]
            return truth.p_click(
                shopper.vtype, offer_id, device=shopper.device, returning=ctx.is_returning, impressions=0
            )

        clicked = rng.random() < p_true(decision.offer.id)
        record = decision.log_record()
        logs.append(Logged.from_record(record, 1.0 if clicked else 0.0))
        truths.append(p_true)
        records.append(record)
    return logs, truths, records


ALL_LOGS, ALL_TRUTHS, ALL_RECORDS = logged_world(12_000)
# A candidate learned from some of the log must be evaluated on the rest: on its own training
# data it looks better than it is (it learned those very clicks).
TRAIN = 4000
LOGS, TRUTHS, RECORDS = ALL_LOGS[TRAIN:], ALL_TRUTHS[TRAIN:], ALL_RECORDS[TRAIN:]


def true_value(target: Callable[[Logged], Mapping[str, float]]) -> float:
    """The candidate's expected click rate on the logged contexts, from the hidden truth."""
    return sum(
        sum(p * p_true(a) for a, p in target(log).items()) for log, p_true in zip(LOGS, TRUTHS, strict=True)
    ) / len(LOGS)


def learned_greedy() -> Callable[[Logged], Mapping[str, float]]:
    """A policy trained on the first part of the log, exploiting (a realistic candidate)."""
    model = ClickModel()
    for record, log in zip(ALL_RECORDS[:TRAIN], ALL_LOGS[:TRAIN], strict=True):
        model.learn_one(record["features"], log.reward > 0)
    greedy = PolicyConfig(holdout_percent=0.0, epsilon_start=0.0, epsilon_min=0.0, epsilon_restart=0.0)
    return lambda log: action_probabilities(CATALOGUE, log.eligible, log.context, model, greedy)


CANDIDATES: dict[str, Callable[[Logged], Mapping[str, float]]] = {
    "uniform": lambda log: {a: 1.0 / len(log.eligible) for a in log.eligible},
    "always-books": deterministic(lambda log: "books-3-for-2"),
    "page-category": deterministic(
        lambda log: next(
            (o.id for o in CATALOGUE.offers_for_slot(SLOT) if log.context.page_category in o.categories),
            log.eligible[0],
        )
    ),
    "learned-greedy": learned_greedy(),
}


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_ips_and_snips_cover_the_true_click_rate(name: str) -> None:
    target = CANDIDATES[name]
    truth = true_value(target)
    # 99 % intervals: the candidates share one log (and its luck), so their errors are correlated.
    for estimate in (ips(LOGS, target, z=2.58), snips(LOGS, target, z=2.58)):
        assert estimate.contains(truth), (name, truth, estimate)
        assert estimate.high - estimate.low < 0.08, "8,000 logged decisions give a usable interval"


def test_the_logging_policy_evaluates_to_its_own_click_rate() -> None:
    logged = {id(log): record for log, record in zip(LOGS, RECORDS, strict=True)}
    mean_reward = sum(log.reward for log in LOGS) / len(LOGS)

    def logging_policy(log: Logged) -> Mapping[str, float]:
        # Exact replay of what the logging policy did: epsilon-uniform around its greedy choice.
        record = logged[id(log)]
        return action_probabilities(CATALOGUE, record["eligible"], log.context, ClickModel(), LOGGING)

    estimate = snips(LOGS, logging_policy)
    assert estimate.value == pytest.approx(mean_reward, abs=1e-12)
    assert estimate.effective_n == pytest.approx(len(LOGS))


def test_effective_sample_size_shrinks_when_the_candidate_disagrees_with_the_log() -> None:
    close = ips(LOGS, CANDIDATES["uniform"])
    far = ips(LOGS, CANDIDATES["always-books"])
    assert far.effective_n < close.effective_n / 3
    assert (far.high - far.low) > (close.high - close.low)


def test_logged_decisions_come_back_from_the_decision_log() -> None:
    record = json.loads(json.dumps(RECORDS[0]))
    again = Logged.from_record(record, LOGS[0].reward)
    assert again == LOGS[0]
    assert isinstance(again.context, DecisionContext)


def test_bad_input_is_refused() -> None:
    bad = Logged(DecisionContext(), ("a",), "a", 0.0, 1.0)
    with pytest.raises(ValueError, match=r"propensity 0.0 for offer 'a' is not in \(0, 1\]"):
        ips([bad], deterministic(lambda log: "a"))
    with pytest.raises(ValueError, match="no logged decisions"):
        snips([], deterministic(lambda log: "a"))


def test_estimate_serialises() -> None:
    estimate = snips(LOGS[:100], CANDIDATES["uniform"])
    assert isinstance(estimate, Estimate)
    assert set(json.loads(json.dumps(estimate.to_dict()))) == {"value", "low", "high", "n", "effective_n"}
