"""Unit tests of reward attribution (decision x impression x click x purchase) and of the trainer."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tracker.models.learner import ClickModel
from tracker.models.rewards import AttributionConfig, Feedback, Reward, VisitorRewards
from tracker.models.trainer import Trainer
from tracker.schema import parse_event

T0 = 1_764_000_000_000
WINDOW = 30 * 60_000
CONFIG = AttributionConfig(window_ms=WINDOW, lateness_ms=60_000, clock_skew_ms=5 * 60_000)
END = T0 + WINDOW + 60_000  # when a decision made at T0 is finished


def join(config: AttributionConfig = CONFIG) -> VisitorRewards:
    return VisitorRewards("shop", "visitor-0001", config)


def decision(decision_id: str = "d1", ts: int = T0, offer_id: str = "run", **fields: Any) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "offer_id": offer_id,
        "slot": "home-hero",
        "ts": ts,
        "propensity": 0.9,
        "model_version": "0000000001-abc",
        "holdout": False,
        "features": {offer_id: 1.0, "match": 0.5},
    } | fields


def impression(
    at: int, decision_id: str = "d1", offer_id: str = "run", event_id: str | None = None
) -> Feedback:
    return Feedback("impression", event_id or f"i-{decision_id}-{at}", at, decision_id, offer_id)


def click(at: int, decision_id: str = "d1", offer_id: str = "run", event_id: str | None = None) -> Feedback:
    return Feedback("click", event_id or f"c-{decision_id}-{at}", at, decision_id, offer_id)


def purchase(at: int, value: float, event_id: str = "p1") -> Feedback:
    return Feedback("purchase", event_id, at, value=value)


def test_nothing_happens_reward_zero_when_the_window_closes() -> None:
    state = join()
    assert state.add_decision(decision())
    assert state.on_tick(END - 1) == []
    [reward] = state.on_tick(END)
    assert (reward.reward, reward.clicked, reward.impressed, reward.conversion_value) == (
        0.0,
        False,
        False,
        0.0,
    )
    assert (reward.decision_id, reward.offer_id, reward.propensity, reward.finished_at) == (
        "d1",
        "run",
        0.9,
        END,
    )
    assert reward.features == {"run": 1.0, "match": 0.5}
    assert state.on_tick(END + 10_000) == [], "a reward is emitted once"
    assert not state.idle and state.next_due_ms == END + WINDOW + 60_000, "remembered for late feedback"
    assert state.on_tick(END + WINDOW + 60_000) == []
    assert state.idle and state.next_due_ms is None


def test_click_inside_the_window_is_a_reward_of_one() -> None:
    state = join()
    state.add_decision(decision())
    assert state.on_event(impression(T0 + 500)) == "joined"
    assert state.on_event(click(T0 + WINDOW - 1)) == "joined"
    [reward] = state.on_tick(END)
    assert (reward.reward, reward.clicked, reward.impressed) == (1.0, True, True)
    assert state.on_event(click(T0 + 600)) == "finished", "its reward is out: too late to count"


@pytest.mark.parametrize(
    "at",
    [
        T0 + WINDOW,  # the window is half-open: its end is outside
        T0 + WINDOW + 30_000,  # late, though still before the decision is finished
        T0 - 5 * 60_000 - 1,  # earlier than any clock skew explains
    ],
)
def test_click_outside_the_window_is_ignored(at: int) -> None:
    state = join()
    state.add_decision(decision())
    assert state.on_event(click(at)) == "outside_window"
    [reward] = state.on_tick(END)
    assert reward.reward == 0.0 and not reward.impressed


def test_a_click_slightly_before_the_decision_counts_as_clock_skew() -> None:
    state = join()
    state.add_decision(decision())
    state.on_event(click(T0 - 60_000))
    [reward] = state.on_tick(END)
    assert reward.clicked and reward.impressed, "a click implies an impression"


def test_feedback_for_another_offer_or_decision_does_not_count() -> None:
    state = join()
    state.add_decision(decision())
    assert state.on_event(click(T0 + 1000, offer_id="pan")) == "other_offer"
    assert state.on_event(click(T0 + 1000, decision_id="other")) == "waiting"
    [reward] = state.on_tick(END)
    assert not reward.clicked


def test_events_that_arrive_before_their_decision_wait_for_it() -> None:
    state = join()
    outcomes = [state.on_event(f) for f in (impression(T0 + 100), click(T0 + 200), purchase(T0 + 300, 80.0))]
    assert outcomes == ["waiting", "waiting", "waiting"]
    assert not state.idle
    state.add_decision(decision())
    [reward] = state.on_tick(END)
    assert (reward.clicked, reward.impressed, reward.conversion_value) == (True, True, 80.0)


def test_late_feedback_is_recognised_as_late_until_the_memory_goes() -> None:
    """The worker keeps only plain data (and drops it when idle): after a decision's reward is
    out, its feedback is ``finished`` (lateness too short), not ``waiting`` for a decision that
    will never come again."""
    state = join()
    state.add_decision(decision())
    state.on_event(impression(T0 + 100))
    [reward] = state.on_tick(END)
    assert not reward.clicked
    state = VisitorRewards.from_dict(json.loads(json.dumps(state.to_dict())), CONFIG)
    assert state.on_event(click(T0 + 200)) == "finished"
    assert state.on_tick(END + WINDOW + 60_000 - 1) == [] and not state.idle
    state.on_tick(END + WINDOW + 60_000)
    assert state.idle
    assert state.on_event(click(T0 + 300)) == "waiting", "forgotten after window + lateness"
    legacy = state.to_dict()
    del legacy["forget"]  # a state written before the memory was kept
    assert VisitorRewards.from_dict(legacy, CONFIG).to_dict() == state.to_dict()


def test_orphans_are_forgotten_after_their_horizon() -> None:
    state = join()
    state.on_event(click(T0))
    assert state.next_due_ms == T0 + WINDOW + 60_000 + 5 * 60_000, "a tick is due to drop it"
    assert state.on_tick(T0 + WINDOW + 60_000 + 5 * 60_000) == []
    assert state.idle
    state.add_decision(decision())
    [reward] = state.on_tick(END)
    assert not reward.clicked


def test_purchase_goes_to_the_last_click_before_it_inside_the_window() -> None:
    state = join()
    state.add_decision(decision("d1", T0, "run"))
    state.add_decision(decision("d2", T0 + 1000, "pan"))
    state.on_event(click(T0 + 2000, "d1", "run"))
    state.on_event(click(T0 + 3000, "d2", "pan"))
    state.on_event(purchase(T0 + 4000, 120.0, "p1"))
    state.on_event(purchase(T0 + 2500, 30.0, "p0"))  # after d1's click only
    state.on_event(purchase(T0 + 4000, 120.0, "p1"))  # redelivered: counted once
    rewards = {r.decision_id: r for r in state.on_tick(END + 1000)}
    assert rewards["d1"].conversion_value == 30.0
    assert rewards["d2"].conversion_value == 120.0


def test_purchase_without_a_click_or_after_the_window_earns_nothing() -> None:
    state = join()
    state.add_decision(decision())
    state.on_event(purchase(T0 + 1000, 50.0, "before-click"))
    state.on_event(impression(T0 + 10))
    [reward] = state.on_tick(END)
    assert reward.conversion_value == 0.0 and not reward.clicked
    state2 = join()
    state2.add_decision(decision())
    state2.on_event(click(T0 + 1000))
    state2.on_event(purchase(T0 + WINDOW, 50.0, "too-late"))
    [reward2] = state2.on_tick(END)
    assert reward2.clicked and reward2.conversion_value == 0.0


def test_duplicates_count_once() -> None:
    state = join()
    assert state.add_decision(decision())
    assert not state.add_decision(decision()), "a redelivered decision is recognised"
    for _ in range(3):
        state.on_event(click(T0 + 10, event_id="same"))
    [reward] = state.on_tick(END)
    assert reward.clicked
    assert not state.add_decision(decision()), "even after it finished"
    assert state.on_tick(END * 2) == []
    assert not state.add_decision(decision("d9", offer_id=None)), (
        "a decision that showed nothing waits for nothing"
    )


def test_state_is_bounded_and_the_oldest_finishes_early() -> None:
    state = join(AttributionConfig(window_ms=WINDOW, max_pending=3, max_orphans=2))
    for i in range(4):
        state.add_decision(decision(f"d{i}", T0 + i))
    assert state.next_due_ms == 0, "over the bound: due at once"
    [early] = state.on_tick(T0 + 10)
    assert early.decision_id == "d0"
    for i in range(5):
        state.on_event(click(T0 + i, decision_id=f"unknown{i}"))
    assert len(state.to_dict()["orphans"]) == 2


def test_state_round_trips_as_plain_data_mid_flight() -> None:
    state = join()
    state.add_decision(decision("d1"))
    state.on_event(click(T0 + 5))
    state.on_event(click(T0 + 6, decision_id="d2"))  # orphan
    data = json.loads(json.dumps(state.to_dict()))
    copy = VisitorRewards.from_dict(data, CONFIG)
    copy.add_decision(decision("d2", offer_id="run"))
    assert [(r.decision_id, r.clicked) for r in copy.on_tick(END)] == [("d1", True), ("d2", True)]
    with pytest.raises(ValueError, match="reward join state layout 7"):
        VisitorRewards.from_dict(data | {"v": 7}, CONFIG)


def test_feedback_from_schema_events() -> None:
    base = {"ts": T0 + 1000, "site_id": "shop", "visitor_id": "visitor-0001"}
    imp = parse_event(
        base | {"event_id": "7a1f0c3e-95b4-4c8e-9a55-0c6b6f2b9d10", "type": "offer_impression",
                "decision_id": "d1", "offer_id": "run"}
    )  # fmt: skip
    buy = parse_event(
        base | {"event_id": "7a1f0c3e-95b4-4c8e-9a55-0c6b6f2b9d11", "type": "purchase", "order_id": "o1",
                "value": 42.5, "currency": "EUR"}
    )  # fmt: skip
    view = parse_event(
        base | {"event_id": "7a1f0c3e-95b4-4c8e-9a55-0c6b6f2b9d12", "type": "page_view"}
    )  # fmt: skip
    assert Feedback.from_event(imp, received_at=T0 + 500) == Feedback(
        "impression", "7a1f0c3e-95b4-4c8e-9a55-0c6b6f2b9d10", T0 + 500, "d1", "run"
    ), "client time is clamped to the receive time"
    parsed = Feedback.from_event(buy)
    assert parsed is not None and (parsed.kind, parsed.value) == ("purchase", 42.5)
    assert Feedback.from_event(view) is None


def test_reward_round_trips() -> None:
    state = join()
    state.add_decision(decision())
    [reward] = state.on_tick(END)
    assert Reward.from_dict(json.loads(json.dumps(reward.to_dict()))) == reward


@pytest.mark.parametrize(
    "fields",
    [{"window_ms": 0}, {"lateness_ms": -1}, {"max_pending": 0}],
)
def test_attribution_config_refuses_nonsense(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        AttributionConfig(**fields)


# --- Trainer ---------------------------------------------------------------------------------------


def reward(decision_id: str, clicked: bool, **fields: Any) -> Reward:
    base: dict[str, Any] = {
        "decision_id": decision_id, "site_id": "shop", "visitor_id": "visitor-0001", "offer_id": "run",
        "slot": "home-hero", "decided_at": T0, "finished_at": END, "propensity": 0.9, "model_version": None,
        "holdout": False, "features": {"run": 1.0}, "impressed": True, "clicked": clicked,
        "conversion_value": 0.0,
    }  # fmt: skip
    return Reward(**(base | fields))


def test_trainer_learns_each_reward_once_and_honours_its_options() -> None:
    trainer = Trainer(ClickModel(), learn_holdout=False, require_impression=True)
    assert trainer.learn(reward("a", True))
    assert not trainer.learn(reward("a", True)), "redelivered"
    assert not trainer.learn(reward("b", True, holdout=True))
    assert not trainer.learn(reward("c", False, impressed=False))
    assert not trainer.learn(reward("d", False, features={}))
    assert trainer.model.updates == 1


def test_trainer_publishes_by_count_or_by_time() -> None:
    trainer = Trainer(ClickModel(), publish_every_updates=3, publish_every_ms=10_000)
    assert not trainer.should_publish(now_ms=0), "nothing learned"
    trainer.learn(reward("a", True))
    assert trainer.should_publish(now_ms=0), "first snapshot as soon as there is one"
    snapshot = trainer.publish(now_ms=0, meta={"offset": 1})
    assert snapshot["meta"] == {"offset": 1} and snapshot["updates"] == 1
    trainer.learn(reward("b", False))
    assert not trainer.should_publish(now_ms=9_999)
    assert trainer.should_publish(now_ms=10_000)
    trainer.learn(reward("c", False))
    trainer.learn(reward("d", False))
    assert trainer.should_publish(now_ms=1), "three updates since the last publish"
    resumed = Trainer.from_snapshot(trainer.publish(now_ms=1))
    assert resumed.model.version == trainer.model.version


def test_trainer_restarts_exploration_when_clicks_collapse_but_not_while_learning() -> None:
    rng = random.Random(1)
    trainer = Trainer(ClickModel(), drift_fast=200, drift_slow=2000)
    n = 0

    def feed(rate: float, count: int) -> None:
        nonlocal n
        for _ in range(count):
            n += 1
            trainer.learn(reward(f"r{n}", rng.random() < rate))

    feed(0.05, 1000)
    feed(0.15, 3000)  # the model getting better: the click rate rises
    assert trainer.restarts == 0
    feed(0.15, 3000)
    assert trainer.restarts == 0, "a stable rate does not raise false alarms"
    feed(0.02, 600)  # what the model knew stopped working
    assert trainer.restarts == 1
    assert trainer.model.restarts == 1 and trainer.model.exploration_age < 600
    feed(0.02, 3000)
    assert trainer.restarts == 1, "the new, lower rate is the new normal"


def test_a_burst_of_feedback_lost_to_lateness_is_not_a_drift() -> None:
    """A stalled pipeline finishes hundreds of decisions before their impressions and clicks
    arrive: rewards of banners not seen, none clicked. They are learned (an unseen banner is a
    miss unless require_impression), but once the site is known to report impressions they
    do not move the drift watch; a real collapse among banners seen still does."""
    rng = random.Random(2)
    trainer = Trainer(ClickModel(), drift_fast=200, drift_slow=2000)
    n = 0

    def feed(rate: float, count: int, *, impressed: bool = True) -> None:
        nonlocal n
        for _ in range(count):
            n += 1
            trainer.learn(reward(f"r{n}", impressed and rng.random() < rate, impressed=impressed))

    feed(0.15, 3000)
    feed(0.0, 600, impressed=False)  # the stall
    assert trainer.restarts == 0 and trainer.model.updates == 3600
    feed(0.02, 600)
    assert trainer.restarts == 1

    never_reported = Trainer(ClickModel(), drift_fast=200, drift_slow=2000)
    for i in range(3000):
        never_reported.learn(reward(f"a{i}", rng.random() < 0.15, impressed=False))
    for i in range(600):
        never_reported.learn(reward(f"b{i}", rng.random() < 0.02, impressed=False))
    assert never_reported.restarts == 1, "a site without impressions is watched on every reward"
