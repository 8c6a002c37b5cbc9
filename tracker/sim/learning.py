"""Proof that the policy learns: an in-process simulation against a hidden ground truth.

Every step, one simulated shopper (:mod:`tracker.sim.shoppers`) browses and
asks for an offer in one slot. The *same* visit is shown to five policies,
each with its own frequency caps, randomness and clicks:

- ``ours``: the real thing. :func:`tracker.models.policy.decide` on a model
  restored from the last published snapshot, decisions joined with their
  impression and click by :class:`tracker.models.rewards.VisitorRewards`
  inside the attribution window, rewards learned by the one
  :class:`tracker.models.trainer.Trainer`, which publishes snapshots as the
  service would. Includes the holdout group and exploration;
- the baselines of :mod:`tracker.sim.baselines`, decided on the same visits:
- ``random``: a uniformly random eligible offer;
- ``popular``: the offer with the best click rate so far, for everyone
  (epsilon-greedy, learning with the same delay);
- ``rules``: the rule-based ranking that served before the learner
  (:func:`tracker.models.ranking.choose_offer`: the offer about the
  categories the visitor is most interested in);
- ``oracle``: the eligible offer with the highest true click probability.

Clicks are drawn from the hidden truth (:mod:`tracker.sim.ground_truth`).
Reported: click-through rate per window of impressions for each policy, both
*realised* (clicks / impressions) and *expected* (mean true click probability
of the offers shown: the same quantity without the coin-flip noise), ratios
to random and oracle at a checkpoint, recovery after the drift, and lift of
personalised decisions over the holdout.

Pure and deterministic: the same config gives the same report.
"""

from __future__ import annotations

import heapq
import random
import uuid
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tracker.models.caps import ImpressionCounts
from tracker.models.catalogue import Catalogue, Offer, load_catalogue
from tracker.models.features import DecisionContext
from tracker.models.learner import ClickModel, decode_snapshot, encode_snapshot
from tracker.models.policy import PolicyConfig, decide
from tracker.models.rewards import AttributionConfig, Feedback, VisitorRewards
from tracker.models.trainer import Trainer
from tracker.sim.baselines import BASELINES, Baselines
from tracker.sim.ground_truth import GroundTruth
from tracker.sim.shoppers import SITE_ID, Crowd, Shopper, segment_purity

START_MS = 1_763_900_000_000
POLICIES = ("ours", *BASELINES)


@dataclass(frozen=True)
class LearningConfig:
    """One simulation run. Times are simulated (epoch ms), never the wall clock."""

    impressions: int = 40_000
    drift_at: int | None = 25_000
    checkpoint: int = 20_000
    checkpoint_span: int = 4_000
    window: int = 1_000
    seed: int = 7
    slot: str = "home-hero"
    catalogue_path: Path | None = None
    mean_gap_ms: int = 2_000
    attribution_window_ms: int = 5 * 60_000
    # Clicks come 1 s to this long after the impression (within the attribution window).
    max_click_delay_ms: int = 60_000
    learning_rate: float = 0.05
    publish_every_updates: int = 250
    publish_every_ms: int = 5 * 60_000
    # How much of its weights the trainer keeps when it detects a drift (Trainer.drift_shrink).
    drift_shrink: float = 0.25
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    popular_epsilon: float = 0.05
    new_share: float = 0.3


@dataclass
class Track:
    """What one policy showed: true click probability and click of each impression."""

    expected: array = field(default_factory=lambda: array("d"))
    clicks: array = field(default_factory=lambda: array("b"))
    holdout: array = field(default_factory=lambda: array("b"))

    def add(self, p: float, clicked: bool, holdout: bool = False) -> None:
        self.expected.append(p)
        self.clicks.append(1 if clicked else 0)
        self.holdout.append(1 if holdout else 0)

    def ctr(self, start: int, end: int, *, holdout: bool | None = None) -> tuple[float, float]:
        """(realised, expected) click-through rate over impressions ``[start, end)``.

        ``holdout`` True or False keeps only the holdout group's impressions or only the others'.
        """
        rows = range(start, min(end, len(self.clicks)))
        if holdout is not None:
            rows = [i for i in rows if self.holdout[i] == holdout]  # type: ignore[assignment]
        n = max(1, len(rows))
        return sum(self.clicks[i] for i in rows) / n, sum(self.expected[i] for i in rows) / n


class _Ours:
    """The production policy, end to end but in process."""

    def __init__(self, catalogue: Catalogue, config: LearningConfig, rng: random.Random) -> None:
        self.catalogue = catalogue
        self.config = config
        self.rng = rng
        self.trainer = Trainer(
            ClickModel(learning_rate=config.learning_rate),
            publish_every_updates=config.publish_every_updates,
            publish_every_ms=config.publish_every_ms,
            drift_shrink=config.drift_shrink,
        )
        # The API only ever sees published snapshots, starting with the untrained model's.
        self.serving = decode_snapshot(encode_snapshot(self.trainer.publish(now_ms=0)))
        self.attribution = AttributionConfig(window_ms=config.attribution_window_ms, lateness_ms=0)
        self.joins: dict[str, VisitorRewards] = {}
        self.counts: dict[str, ImpressionCounts] = {}
        self.due: list[tuple[int, str]] = []
        self.snapshots = 1
        self.personalised = 0

    def choose(self, shopper: Shopper, ctx: DecisionContext, now_ms: int) -> tuple[Offer | None, bool]:
        counts = self.counts.setdefault(shopper.visitor_id, ImpressionCounts())
        decision = decide(
            self.catalogue,
            self.config.slot,
            ctx,
            model=self.serving,
            rng=self.rng,
            site_id=SITE_ID,
            visitor_id=shopper.visitor_id,
            config=self.config.policy,
            now_ms=now_ms,
            counts=counts,
        )
        if decision.offer is None:
            return None, False
        self.personalised += decision.personalised
        decision_id = uuid.UUID(int=self.rng.getrandbits(128)).hex
        join = self.joins.get(shopper.visitor_id)
        if join is None:
            join = self.joins[shopper.visitor_id] = VisitorRewards(
                SITE_ID, shopper.visitor_id, self.attribution
            )
        join.add_decision(decision.log_record() | {"decision_id": decision_id, "ts": now_ms})
        heapq.heappush(self.due, (now_ms + self.attribution.window_ms, shopper.visitor_id))
        shopper.extra["decision_id"] = decision_id
        return decision.offer, decision.holdout

    def shown(self, shopper: Shopper, ctx: DecisionContext, offer: Offer, clicked: bool, now_ms: int) -> None:
        decision_id = str(shopper.extra["decision_id"])
        join = self.joins[shopper.visitor_id]
        self.counts[shopper.visitor_id].record(
            offer.id, at_ms=now_ms, session_id=ctx.session_id, decision_id=decision_id
        )
        join.on_event(Feedback("impression", f"i-{decision_id}", now_ms + 300, decision_id, offer.id))
        if clicked:
            delay = self.rng.randrange(1_000, max(1_001, self.config.max_click_delay_ms))
            join.on_event(Feedback("click", f"c-{decision_id}", now_ms + delay, decision_id, offer.id))

    def tick(self, now_ms: int) -> None:
        while self.due and self.due[0][0] <= now_ms:
            _, visitor_id = heapq.heappop(self.due)
            for reward in self.joins[visitor_id].on_tick(now_ms):
                self.trainer.learn(reward)
        if self.trainer.should_publish(now_ms=now_ms):
            # Through the wire format, as the API would read it from Redis.
            self.serving = decode_snapshot(encode_snapshot(self.trainer.publish(now_ms=now_ms)))
            self.snapshots += 1


def run_learning(config: LearningConfig, *, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run the simulation and return the report (plain data, see :func:`summarise`)."""
    catalogue = load_catalogue(config.catalogue_path or _default_catalogue_path())
    truth = GroundTruth(catalogue, config.slot, seed=config.seed, drift_at=config.drift_at)
    crowd = Crowd(truth, random.Random(config.seed), new_share=config.new_share)
    ours = _Ours(catalogue, config, random.Random(f"{config.seed}:ours"))
    baselines = Baselines(
        catalogue,
        config.slot,
        seed=config.seed,
        popular_epsilon=config.popular_epsilon,
        feedback_delay_ms=config.attribution_window_ms,
    )
    tracks = {name: Track() for name in POLICIES}
    # The hidden type of each impression's visitor (an index into truth.types), for CTR by type.
    visitor_types = array("b")
    clock = random.Random(f"{config.seed}:clock")
    now = START_MS

    for step in range(config.impressions):
        now += max(1, int(clock.expovariate(1.0 / config.mean_gap_ms)))
        shopper, ctx = crowd.next_visit(now)
        returning = ctx.is_returning
        visitor_types.append(truth.types.index(shopper.vtype))

        def truth_p(
            offer: Offer, shopper: Shopper = shopper, returning: bool = returning, step: int = step
        ) -> float:
            return truth.p_click(
                shopper.vtype, offer.id, device=shopper.device, returning=returning, impressions=step
            )

        offer, holdout = ours.choose(shopper, ctx, now)
        if offer is None:
            tracks["ours"].add(0.0, False, holdout)
        else:
            p = truth_p(offer)
            clicked = ours.rng.random() < p
            tracks["ours"].add(p, clicked, holdout)
            ours.shown(shopper, ctx, offer, clicked, now)
        for name, (p, clicked) in baselines.show(shopper.visitor_id, ctx, now, truth_p).items():
            tracks[name].add(p, clicked)
        ours.tick(now)
        baselines.tick(now)
        if progress is not None and (step + 1) % config.window == 0:
            progress(step + 1)

    extra = {
        "snapshots_published": ours.snapshots,
        "model": ours.serving.version,
        "exploration_restarts": ours.trainer.restarts,
        # The simulated worker's segments (tracker.sim.shoppers) against the hidden types.
        "segments": segment_purity(crowd.shoppers, {s.visitor_id: s.profile.segment for s in crowd.shoppers}),
    }
    types = ([t.name for t in truth.types], visitor_types)
    return summarise(config, tracks, extra=extra, visitor_types=types)


def summarise(
    config: LearningConfig,
    tracks: dict[str, Track],
    *,
    extra: dict[str, Any],
    visitor_types: tuple[list[str], array] | None = None,
) -> dict[str, Any]:
    """Curves, checkpoint ratios, drift recovery and holdout lift from the per-impression tracks.

    ``ours`` is the policy on the visitors it decides for (everyone but the
    holdout group, a random 5 % by hash); ``ours_with_holdout`` is all our
    traffic, holdout included, which is what the site sees overall.
    ``visitor_types`` (type names, and each impression's index into them)
    adds ``by_type``: each policy's CTR per hidden visitor type over the
    checkpoint window.
    """
    n = config.impressions
    views: dict[str, tuple[Track, bool | None]] = {
        "ours": (tracks["ours"], False),
        "ours_with_holdout": (tracks["ours"], None),
        **{name: (track, None) for name, track in tracks.items() if name != "ours"},
    }
    curves: dict[str, list[dict[str, float]]] = {name: [] for name in views}
    for end in range(config.window, n + 1, config.window):
        for name, (track, holdout) in views.items():
            realised, expected = track.ctr(end - config.window, end, holdout=holdout)
            curves[name].append({"impressions": end, "ctr": realised, "expected_ctr": expected})

    # "After N impressions": the CTR over the checkpoint_span impressions that follow the Nth
    # (cut short by the drift, so the figure is about the world the policy learned).
    start = min(config.checkpoint, n)
    span = [start, min(start + config.checkpoint_span, config.drift_at or n, n)]
    if span[1] <= span[0]:
        span = [max(0, start - config.checkpoint_span), start]
    checkpoint = start
    at_checkpoint = {}
    for name, (track, holdout) in views.items():
        realised, expected = track.ctr(*span, holdout=holdout)
        at_checkpoint[name] = {"ctr": realised, "expected_ctr": expected}

    def ratio(name: str, baseline: str) -> float | None:
        base = at_checkpoint[baseline]["expected_ctr"]
        return at_checkpoint[name]["expected_ctr"] / base if base else None

    report: dict[str, Any] = {
        "config": _config_dict(config),
        "curves": curves,
        "checkpoint": {
            "impressions": checkpoint,
            "window": span,
            "ctr": at_checkpoint,
            "vs_random": ratio("ours", "random"),
            "vs_oracle": ratio("ours", "oracle"),
            "vs_popular": ratio("ours", "popular"),
            "with_holdout_vs_random": ratio("ours_with_holdout", "random"),
            "with_holdout_vs_oracle": ratio("ours_with_holdout", "oracle"),
        },
        "lift": _holdout_lift(tracks["ours"], start=min(config.window * 5, n // 4), end=config.drift_at or n),
        **extra,
    }
    if config.drift_at is not None and config.drift_at < n:
        report["drift"] = _recovery(config, curves)
    if visitor_types is not None:
        report["by_type"] = _by_type(views, *visitor_types, span=span)
    return report


def _by_type(
    views: dict[str, tuple[Track, bool | None]], names: list[str], types: array, *, span: list[int]
) -> dict[str, dict[str, Any]]:
    """Per hidden visitor type: impressions and each policy's (realised, expected) CTR over ``span``."""
    out: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(names):
        rows = [i for i in range(span[0], min(span[1], len(types))) if types[i] == index]
        figures: dict[str, Any] = {"impressions": len(rows)}
        for policy, (track, holdout) in views.items():
            kept = rows if holdout is None else [i for i in rows if track.holdout[i] == holdout]
            k = max(1, len(kept))
            figures[policy] = {
                "ctr": sum(track.clicks[i] for i in kept) / k,
                "expected_ctr": sum(track.expected[i] for i in kept) / k,
            }
        out[name] = figures
    return out


def _holdout_lift(track: Track, *, start: int, end: int) -> dict[str, Any]:
    groups: dict[bool, list[tuple[float, int]]] = {True: [], False: []}
    for i in range(start, min(end, len(track.clicks))):
        groups[bool(track.holdout[i])].append((track.expected[i], track.clicks[i]))
    out: dict[str, Any] = {"impressions": [start, end]}
    for flag, label in ((False, "personalised"), (True, "holdout")):
        rows = groups[flag]
        k = max(1, len(rows))
        out[label] = {
            "impressions": len(rows),
            "ctr": sum(c for _, c in rows) / k,
            "expected_ctr": sum(p for p, _ in rows) / k,
        }
    hold = out["holdout"]
    pers = out["personalised"]
    out["lift"] = pers["ctr"] / hold["ctr"] - 1 if hold["ctr"] else None
    out["expected_lift"] = pers["expected_ctr"] / hold["expected_ctr"] - 1 if hold["expected_ctr"] else None
    return out


def _recovery(config: LearningConfig, curves: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """How far ours fell after the drift, and how many impressions until it was back at 80 % of oracle."""
    drift = config.drift_at or 0
    after = [
        (o["impressions"], o["expected_ctr"], r["expected_ctr"])
        for o, r in zip(curves["ours"], curves["oracle"], strict=True)
        if o["impressions"] > drift
    ]
    before = [
        o["expected_ctr"] / r["expected_ctr"]
        for o, r in zip(curves["ours"], curves["oracle"], strict=True)
        if o["impressions"] <= drift and o["impressions"] > drift - 2 * config.window and r["expected_ctr"]
    ]
    ratios = [(end, ours / oracle if oracle else 0.0) for end, ours, oracle in after]
    # Recovered: back at 80 % of the oracle after first falling below it (0 if it never fell).
    dip = next((i for i, (_, ratio) in enumerate(ratios) if ratio < 0.8), None)
    if dip is None:
        recovered: int | None = 0
    else:
        recovered = next((end - drift for end, ratio in ratios[dip:] if ratio >= 0.8), None)
    return {
        "at": drift,
        "vs_oracle_before": sum(before) / len(before) if before else None,
        "vs_oracle_lowest_after": min((r for _, r in ratios), default=None),
        "impressions_to_recover": recovered,
        "vs_oracle_at_end": ratios[-1][1] if ratios else None,
    }


def _config_dict(config: LearningConfig) -> dict[str, Any]:
    data = asdict(config)
    data["catalogue_path"] = str(config.catalogue_path) if config.catalogue_path else None
    return data


def _default_catalogue_path() -> Path:
    from tracker.settings import Settings

    return Settings().catalogue_path
