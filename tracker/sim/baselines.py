"""The policies the learner is compared with, shown the same visits: random, popular, rules, oracle.

Each keeps its own frequency caps and draws its own clicks from the hidden
truth, so its click-through rate is what it would have earned on exactly the
visits our policy saw:

- ``random``: a uniformly random eligible offer;
- ``popular``: the offer with the best click rate so far, for everyone
  (epsilon-greedy, learning after the same delay as ours);
- ``rules``: the rule-based ranking that served before the learner
  (:func:`tracker.models.ranking.choose_offer`: the offer about the
  categories the visitor is most interested in);
- ``oracle``: the eligible offer with the highest true click probability.

Used by the in-process simulation (:mod:`tracker.sim.learning`) and by the
run through the real product (:mod:`tracker.sim.pipeline`).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

from tracker.models.caps import ImpressionCounts
from tracker.models.catalogue import Catalogue, Offer
from tracker.models.eligibility import split_eligible
from tracker.models.features import DecisionContext
from tracker.models.ranking import choose_offer

BASELINES = ("random", "popular", "rules", "oracle")


class Popular:
    """Most popular offer for everyone: epsilon-greedy on each offer's click rate so far."""

    def __init__(self, epsilon: float, delay_ms: int, rng: random.Random) -> None:
        self.epsilon = epsilon
        self.delay_ms = delay_ms
        self.rng = rng
        self.shows: dict[str, int] = {}
        self.clicks: dict[str, int] = {}
        self.pending: deque[tuple[int, str, bool]] = deque()

    def choose(self, eligible: list[Offer]) -> Offer:
        if self.rng.random() < self.epsilon:
            return eligible[self.rng.randrange(len(eligible))]
        # A mild prior (1 click in 30 shows) so unseen offers are neither ignored nor over-trusted.
        return max(
            eligible, key=lambda o: ((self.clicks.get(o.id, 0) + 1) / (self.shows.get(o.id, 0) + 30), o.id)
        )

    def shown(self, offer: Offer, clicked: bool, now_ms: int) -> None:
        self.pending.append((now_ms + self.delay_ms, offer.id, clicked))

    def tick(self, now_ms: int) -> None:
        while self.pending and self.pending[0][0] <= now_ms:
            _, offer_id, clicked = self.pending.popleft()
            self.shows[offer_id] = self.shows.get(offer_id, 0) + 1
            self.clicks[offer_id] = self.clicks.get(offer_id, 0) + clicked


class Baselines:
    """The four comparison policies, each with its own caps, randomness and clicks."""

    def __init__(
        self,
        catalogue: Catalogue,
        slot: str,
        *,
        seed: int,
        popular_epsilon: float,
        feedback_delay_ms: int,
    ) -> None:
        self.catalogue = catalogue
        self.slot = slot
        self.rngs = {name: random.Random(f"{seed}:{name}") for name in BASELINES}
        self.popular = Popular(popular_epsilon, feedback_delay_ms, self.rngs["popular"])
        self.counts: dict[str, dict[str, ImpressionCounts]] = {name: {} for name in BASELINES}

    def show(
        self, visitor_id: str, ctx: DecisionContext, now_ms: int, truth_p: Callable[[Offer], float]
    ) -> dict[str, tuple[float, bool]]:
        """Each baseline's choice for this visit: (true click probability, clicked); (0, False) if none."""
        shown: dict[str, tuple[float, bool]] = {}
        for name in BASELINES:
            rng = self.rngs[name]
            visitor_counts = self.counts[name].setdefault(visitor_id, ImpressionCounts())
            eligible, _ = split_eligible(self.catalogue, self.slot, ctx, now_ms=now_ms, counts=visitor_counts)
            offer = self._choose(name, eligible, ctx, now_ms, truth_p, rng)
            if offer is None:
                shown[name] = (0.0, False)
                continue
            visitor_counts.record(offer.id, at_ms=now_ms, session_id=ctx.session_id)
            p = truth_p(offer)
            clicked = rng.random() < p
            shown[name] = (p, clicked)
            if name == "popular":
                self.popular.shown(offer, clicked, now_ms)
        return shown

    def tick(self, now_ms: int) -> None:
        self.popular.tick(now_ms)

    def _choose(
        self,
        name: str,
        eligible: list[Offer],
        ctx: DecisionContext,
        now_ms: int,
        truth_p: Callable[[Offer], float],
        rng: random.Random,
    ) -> Offer | None:
        if not eligible:
            return None
        if name == "random":
            return eligible[rng.randrange(len(eligible))]
        if name == "popular":
            return self.popular.choose(eligible)
        if name == "rules":
            choice = choose_offer(
                self.catalogue, self.slot, dict(ctx.interests), min_interest=0.5, now_ms=now_ms
            )
            return choice.offer if choice is not None and choice.offer in eligible else eligible[0]
        return max(eligible, key=lambda o: (truth_p(o), o.id))
