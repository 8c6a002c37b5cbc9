"""The next-best-offer decision: rules, then the click model with optimism, then epsilon-greedy
exploration.

:func:`decide` is the whole policy for one request:

1. **Rules** (:mod:`tracker.models.eligibility`): the slot's offers that pass
   targeting, dates, cart, page rules and frequency caps are the candidates;
   the others are listed with the rule that excluded them.
2. **Holdout** (:mod:`tracker.models.holdout`): a sticky ``holdout_percent``
   of visitors get the slot's non-personalised default, flagged ``holdout``.
   So does everyone when no model is available (``model_unavailable``).
3. **Score**: each candidate's click probability from the model
   (:mod:`tracker.models.features`, :mod:`tracker.models.learner`), weighed
   with the offer's own record among visitors of the same strongest interest
   (the model's prediction counts as ``prior_impressions`` impressions beside
   it: :meth:`ClickModel.estimate`). Candidates rank by the optimistic end of
   that estimate (``optimism_z`` standard errors up), so an offer with a short
   record and a fair chance of being the best is shown until its record says
   whether it is, while one with a long, poor record drops out. Times
   ``1 + value_weight * value per click`` when conversion value counts. Margin
   is a *bounded* tie-breaker: the score is multiplied by
   ``1 + margin_weight * margin``, so margin can only overturn a difference in
   expected value smaller than ``margin_weight`` (2 % by default); relevance
   comes first. Exact ties go to the higher priority, then the smaller id.
4. **Explore**: with probability epsilon a random candidate, else the best
   one. Epsilon decays with the number of rewards the model has learned from
   (:meth:`PolicyConfig.epsilon`), down to ``epsilon_min`` so that the policy
   keeps noticing when tastes drift; when the trainer detects a drift it starts
   again, from ``epsilon_restart``. The random candidate is drawn uniformly
   except among offers already *ruled out* for this kind of visitor
   (:func:`exploration_weights`: tried often enough with visitors of the same
   strongest interest that even an optimistic estimate of their click rate is
   below the greedy choice's), which keep a tenth of a share: exploration goes
   where something better may still be found. The probability of the chosen
   offer, ``epsilon * share + (1 - epsilon) * [chosen is best]``, is recorded
   as its propensity: exact, and above 0 for every candidate, so logged
   decisions support unbiased offline evaluation (:mod:`tracker.models.offline`).

Cold start: a model that has learned nothing still ranks by its priors
(offers about categories the visitor likes, or the page is about, first;
see :data:`tracker.models.learner.DEFAULT_PRIORS`); per-offer and
per-segment x offer features then learn popularity and segment tastes within
a few hundred rewards, and the interest features personalise as the profile
fills.

Reasons (machine-readable, in the response and the decision log):
``holdout``, ``model_unavailable``, ``no_offer`` (nothing eligible),
``explore``, and for a model choice the visitor fact that weighed most for
it: ``interest:<category>``, ``page:<category>``, ``segment:<id>``,
``context:<feature>`` (device, new or returning), or ``popular`` when
nothing about the visitor did.

>>> import random
>>> from tracker.models.catalogue import parse_catalogue
>>> from tracker.models.features import DecisionContext
>>> from tracker.models.learner import ClickModel
>>> catalogue = parse_catalogue({"offers": [
...     {"id": "welcome", "slots": ["home-hero"], "title": "Welcome", "link": "/", "default": True},
...     {"id": "run", "slots": ["home-hero"], "categories": ["shoes"], "title": "Run", "link": "/c/shoes"},
...     {"id": "pan", "slots": ["home-hero"], "categories": ["kitchen"], "title": "Pan", "link": "/"},
... ]})
>>> ctx = DecisionContext(interests={"shoes": 12.0}, page_category="shoes")
>>> decision = decide(catalogue, "home-hero", ctx, model=ClickModel(), rng=random.Random(3),
...                   site_id="shop", visitor_id="visitor-0001")
>>> decision.offer.id, decision.reason, round(decision.propensity, 4)
('run', 'interest:shoes', 0.9333)
>>> round(sum(c.probability for c in decision.candidates), 10)
1.0
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from tracker.models.caps import ImpressionCounts
from tracker.models.catalogue import Catalogue, Offer
from tracker.models.eligibility import split_eligible
from tracker.models.features import (
    FEATURES_VERSION,
    MATCH_INTEREST,
    MATCH_PAGE,
    ContextParts,
    DecisionContext,
    context_parts,
    offer_features,
    tally_key,
)
from tracker.models.holdout import in_holdout
from tracker.models.learner import ClickModel
from tracker.models.slot_scores import SlotScorer

if TYPE_CHECKING:
    from tracker.settings import Settings

REASON_HOLDOUT = "holdout"
REASON_MODEL_UNAVAILABLE = "model_unavailable"
REASON_NO_OFFER = "no_offer"
REASON_EXPLORE = "explore"
REASON_POPULAR = "popular"

DECISION_LOG_VERSION = 1


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """How the policy trades learning for earning, and who is held out.

    Parameters
    ----------
    epsilon_start, epsilon_min, epsilon_decay_updates
        Exploration rate ``epsilon_min + (epsilon_start - epsilon_min) * d / (d + age)``
        with ``d = epsilon_decay_updates`` and ``age`` the rewards the model learned from
        (since its last exploration restart).
    epsilon_restart, restart_decay_updates
        The same schedule's start and ``d`` after the trainer restarted exploration because
        the click rate collapsed (drift): then what the model knows is wrong, not just
        incomplete, so it explores harder and longer than a new model, whose priors are
        at least sensible.
    margin_weight
        Largest relative score change margin can make (0.02: margin breaks near-ties only).
    value_weight
        Weight of the conversion value per click (per currency unit); 0 ranks by clicks alone.
    holdout_percent, holdout_salt
        Size of the sticky holdout group, and the salt that draws it.
    prior_impressions, optimism_z
        How each offer is judged for a visitor (:meth:`ClickModel.estimate`): the model's
        prediction counts as ``prior_impressions`` impressions beside what visitors with the
        same strongest interest did with the offer, and the ranking uses the Wilson bound
        ``optimism_z`` standard errors above that mean, so an offer with little record but a
        fair chance of being better is shown until its record says whether it is (optimism in
        the face of uncertainty). ``optimism_z`` 0 ranks by the mean.
    ceiling_z, ruled_out_weight
        Where exploration goes (:func:`exploration_weights`): an offer whose click rate among
        visitors with the same strongest interest is, ``ceiling_z`` standard errors up, still
        below the greedy choice's estimate is ruled out for them and keeps ``ruled_out_weight``
        of a plausible offer's share of exploration (never 0: logged decisions must cover every
        candidate for offline evaluation). ``ceiling_z`` 0 explores uniformly.
    """

    epsilon_start: float = 0.1
    epsilon_min: float = 0.02
    # 3,000: with exploration steered away from ruled-out offers (ceiling_z), less of it finds
    # each visitor type's best offer as soon (bench/learning_curve.py --pipeline-timing, 24 seeds:
    # 0.842 of the oracle at 20,000 impressions, 0.837 with 5,000 and 0.823 with 5,000 and
    # uniform exploration; docs/BENCHMARKS.md).
    epsilon_decay_updates: int = 3_000
    epsilon_restart: float = 0.2
    restart_decay_updates: int = 6_000
    margin_weight: float = 0.02
    value_weight: float = 0.0
    holdout_percent: float = 5.0
    holdout_salt: str = "v1"
    ceiling_z: float = 2.0
    ruled_out_weight: float = 0.1
    prior_impressions: float = 5.0
    optimism_z: float = 1.5

    def __post_init__(self) -> None:
        for name in ("epsilon_start", "epsilon_restart"):
            if not 0.0 <= self.epsilon_min <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"need 0 <= epsilon_min ({self.epsilon_min}) <= {name} ({getattr(self, name)}) <= 1"
                )
        for name in ("epsilon_decay_updates", "restart_decay_updates"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)} must be at least 1")
        if not 0.0 <= self.margin_weight <= 0.5:
            raise ValueError(f"margin_weight {self.margin_weight} must be within 0..0.5 (a tie-breaker)")
        if self.value_weight < 0:
            raise ValueError(f"value_weight {self.value_weight} must not be negative")
        if not 0.0 <= self.holdout_percent <= 100.0:
            raise ValueError(f"holdout_percent {self.holdout_percent} must be within 0..100")
        if self.prior_impressions < 0 or self.optimism_z < 0:
            raise ValueError(
                f"prior_impressions ({self.prior_impressions}) and optimism_z ({self.optimism_z}) "
                "must not be negative"
            )
        if self.ceiling_z < 0:
            raise ValueError(f"ceiling_z {self.ceiling_z} must not be negative (0 explores uniformly)")
        if not 0.0 < self.ruled_out_weight <= 1.0:
            raise ValueError(
                f"ruled_out_weight {self.ruled_out_weight} must be within (0, 1]: every candidate keeps "
                "a chance, or logged decisions could not evaluate policies that choose it"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyConfig:
        """The policy as configured by ``TRACKER_*`` settings (holdout, exploration, weights)."""
        return cls(
            epsilon_start=settings.explore_epsilon_start,
            epsilon_min=settings.explore_epsilon_min,
            epsilon_decay_updates=settings.explore_decay_updates,
            epsilon_restart=settings.explore_epsilon_restart,
            restart_decay_updates=2 * settings.explore_decay_updates,
            prior_impressions=settings.explore_prior_impressions,
            optimism_z=settings.explore_optimism_z,
            ceiling_z=settings.explore_ceiling_z,
            ruled_out_weight=settings.explore_ruled_out_weight,
            margin_weight=settings.offer_margin_weight,
            value_weight=settings.offer_value_weight,
            holdout_percent=settings.holdout_percent,
            holdout_salt=settings.holdout_salt,
        )

    def epsilon(self, age: int, *, restarted: bool = False) -> float:
        """Exploration rate of a model ``age`` rewards after it started (or restarted) exploring.

        >>> config = PolicyConfig(epsilon_start=0.1, epsilon_min=0.02, epsilon_decay_updates=2000)
        >>> config.epsilon(0), config.epsilon(2000), round(config.epsilon(10**9), 4)
        (0.1, 0.06, 0.02)
        >>> round(config.epsilon(0, restarted=True), 10)
        0.2
        """
        start, d = (
            (self.epsilon_restart, self.restart_decay_updates)
            if restarted
            else (self.epsilon_start, self.epsilon_decay_updates)
        )
        return self.epsilon_min + (start - self.epsilon_min) * d / (d + max(0, age))


class Candidate(NamedTuple):
    """One offer of the slot as the policy saw it (what the explain endpoint lists).

    ``excluded`` is the rule that removed it (None for a candidate);
    ``p_click`` the model's click probability and ``score`` what the greedy
    choice maximised (None when no model scored it); ``probability`` the
    chance the policy gave it (0 for an excluded offer; sums to 1 over
    candidates); ``contributions`` the top features behind its score
    (only with ``explain=True``).

    A named tuple, not a frozen dataclass: every request builds one per offer of the slot,
    and a frozen dataclass's ``__init__`` costs several times a tuple's.
    """

    offer_id: str
    excluded: str | None
    p_click: float | None
    score: float | None
    probability: float
    contributions: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "offer_id": self.offer_id,
            "excluded": self.excluded,
            "p_click": self.p_click,
            "score": self.score,
            "probability": self.probability,
            "contributions": [list(item) for item in self.contributions],
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`decide`: what to show, with what probability, and why."""

    slot: str
    offer: Offer | None
    propensity: float
    reason: str
    personalised: bool
    holdout: bool
    explored: bool
    epsilon: float
    model_version: str | None
    context: DecisionContext
    candidates: tuple[Candidate, ...] = ()
    # Features of the chosen offer: what the trainer learns from when its reward arrives.
    features: dict[str, float] = field(default_factory=dict)

    def log_record(self) -> dict[str, Any]:
        """The policy's part of the ``decisions`` record (the API adds ids, site, visitor, time)."""
        return {
            "log_version": DECISION_LOG_VERSION,
            "slot": self.slot,
            "offer_id": self.offer.id if self.offer else None,
            "propensity": self.propensity,
            "reason": self.reason,
            "personalised": self.personalised,
            "holdout": self.holdout,
            "explored": self.explored,
            "epsilon": self.epsilon,
            "model_version": self.model_version,
            "features_version": FEATURES_VERSION,
            "features": self.features,
            "context": self.context.to_dict(),
            "eligible": [c.offer_id for c in self.candidates if c.excluded is None],
        }

    def explain(self) -> dict[str, Any]:
        """Everything the explain endpoint shows: candidates with scores and exclusions, model version."""
        return {
            "slot": self.slot,
            "offer_id": self.offer.id if self.offer else None,
            "reason": self.reason,
            "propensity": self.propensity,
            "personalised": self.personalised,
            "holdout": self.holdout,
            "explored": self.explored,
            "epsilon": self.epsilon,
            "model_version": self.model_version,
            "context": self.context.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
        }


def decide(
    catalogue: Catalogue,
    slot: str,
    ctx: DecisionContext,
    *,
    model: ClickModel | None,
    rng: random.Random,
    site_id: str,
    visitor_id: str,
    config: PolicyConfig = PolicyConfig(),
    now_ms: int | None = None,
    counts: ImpressionCounts | None = None,
    explain: bool = False,
    scorer: SlotScorer | None = None,
) -> Decision:
    """Choose the offer for ``slot`` (see the module docstring for the steps).

    Parameters
    ----------
    catalogue, slot
        The offers, and the placement being filled.
    ctx
        What is known about the visitor and the page.
    model
        The current click model (a restored snapshot); None when unavailable.
    rng
        Source of exploration randomness (seeded in tests and simulations).
    site_id, visitor_id
        Who is asking: decides holdout membership.
    config
        Exploration, tie-breaking, value weighting and holdout settings.
    now_ms
        Current time (epoch ms) for date windows and caps; None ignores both.
    counts
        The visitor's impression counts for frequency caps; None ignores caps.
    explain
        Also compute each candidate's top feature contributions.
    scorer
        ``model``'s :class:`SlotScorer` for the slot's offers, to score them all at once (the
        offer API passes one: the same decisions, for less CPU); None scores offer by offer.
    """
    eligible, excluded = split_eligible(catalogue, slot, ctx, now_ms=now_ms, counts=counts)
    excluded_candidates = tuple(
        Candidate(offer.id, str(reason), None, None, 0.0) for offer, reason in excluded
    )
    holdout = config.holdout_percent > 0 and in_holdout(
        site_id, visitor_id, percent=config.holdout_percent, salt=config.holdout_salt
    )
    model_version = model.version if model is not None else None
    if not eligible:
        return _empty_decision(slot, ctx, excluded_candidates, holdout=holdout, model_version=model_version)
    if holdout or model is None:
        reason = REASON_HOLDOUT if holdout else REASON_MODEL_UNAVAILABLE
        decision = _default_decision(slot, eligible, excluded_candidates, ctx, reason, holdout, model_version)
        # The context is known: the reward of this default teaches the model too (trainer's learn_holdout).
        return _with_features(decision)

    choice = choose_among(eligible, ctx, model, config, scorer=scorer)
    scored, best, epsilon, probabilities = choice.scored, choice.best, choice.epsilon, choice.probabilities
    explored = len(scored) > 1 and rng.random() < epsilon
    if not explored:
        index = best
    elif choice.weights is None:
        index = rng.randrange(len(scored))
    else:  # steered away from ruled-out offers (exploration_weights)
        index = rng.choices(range(len(scored)), choice.weights)[0]
    chosen = scored[index]
    features = choice.features(index)
    if explored:
        reason, personalised = REASON_EXPLORE, False
    else:
        reason, personalised = _reason(model, features, chosen.offer, ctx), ctx.has_profile

    order = sorted(range(len(scored)), key=lambda i: (-scored[i].score, scored[i].offer.id))
    candidates = tuple(
        Candidate(
            scored[i].offer.id,
            None,
            scored[i].p_click,
            scored[i].score,
            probabilities[i],
            tuple(model.contributions(choice.features(i))[:8]) if explain else (),
        )
        for i in order
    )
    return Decision(
        slot=slot,
        offer=chosen.offer,
        propensity=probabilities[index],
        reason=reason,
        personalised=personalised,
        holdout=False,
        explored=explored,
        epsilon=epsilon,
        model_version=model_version,
        context=ctx,
        candidates=candidates + excluded_candidates,
        features=features,
    )


@dataclass(frozen=True, slots=True)
class Choice:
    """The eligible offers scored, and the chance the policy gives each: what :func:`decide`
    draws from and :func:`action_probabilities` reports, computed in one place."""

    scored: list[Scored]
    best: int
    epsilon: float
    # How exploration shares itself among ``scored`` (None: uniformly), see exploration_weights.
    weights: list[float] | None
    probabilities: list[float]
    parts: ContextParts

    def features(self, i: int) -> dict[str, float]:
        """The features of ``scored[i]`` (built here when its scorer did not need them)."""
        item = self.scored[i]
        return item.features if item.features is not None else offer_features(self.parts, item.offer)


def choose_among(
    offers: list[Offer],
    ctx: DecisionContext,
    model: ClickModel,
    config: PolicyConfig,
    *,
    scorer: SlotScorer | None = None,
) -> Choice:
    """Score ``offers`` for ``ctx`` and give each its selection probability (holdout aside)."""
    epsilon = config.epsilon(model.exploration_age, restarted=model.restarts > 0)
    parts = context_parts(ctx)
    if scorer is None:
        scored, best = score_offers(offers, parts, model, config)
    else:
        scored, best = score_offers_at_once(offers, parts, scorer, config)
    weights = exploration_weights(scored, best, parts.top, model, config)
    probabilities = selection_probabilities(len(scored), best, epsilon, weights)
    return Choice(scored, best, epsilon, weights, probabilities, parts)


class Scored(NamedTuple):
    """One eligible offer with its features (None when scored without them:
    :meth:`Choice.features` builds them), estimated click probability (``p_click``) and
    ranking score (from its optimistic bound: :meth:`ClickModel.estimate`). A named tuple for
    the same reason as :class:`Candidate`."""

    offer: Offer
    features: dict[str, float] | None
    p_click: float
    score: float


def score_offers(
    offers: list[Offer], parts: ContextParts, model: ClickModel, config: PolicyConfig
) -> tuple[list[Scored], int]:
    """Score each offer for this context; also return the index of the greedy (best) one."""
    top = parts.top
    # Bound once: this loop runs for every offer of the slot on every request.
    predict, estimate = model.predict_one, model.estimate
    prior, optimism_z = config.prior_impressions, config.optimism_z
    value_weight, margin_weight = config.value_weight, config.margin_weight
    scored: list[Scored] = []
    best = -1
    for offer in offers:
        x = offer_features(parts, offer)
        p_click, value = estimate(tally_key(offer.id, top), predict(x), prior_impressions=prior, z=optimism_z)
        if value_weight:
            value *= 1.0 + value_weight * model.value_per_click(offer.id)
        score = value * (1.0 + margin_weight * offer.margin)
        if best < 0 or _beats(offer, score, scored[best].offer, scored[best].score):
            best = len(scored)
        scored.append(Scored(offer, x, p_click, score))
    return scored, best


def score_offers_at_once(
    offers: list[Offer], parts: ContextParts, scorer: SlotScorer, config: PolicyConfig
) -> tuple[list[Scored], int]:
    """:func:`score_offers` with the whole slot's scores from ``scorer``: the same floats
    (:mod:`tracker.models.slot_scores`), without building each offer's features."""
    means, upper = scorer.estimates(parts, prior_impressions=config.prior_impressions, z=config.optimism_z)
    value = upper
    if config.value_weight:
        value = value * scorer.value_weights(config.value_weight)
    scores = (value * scorer.margin_weights(config.margin_weight)).tolist()
    position = scorer.position
    scored: list[Scored] = []
    best = -1
    for offer in offers:
        i = position[offer.id]
        score = scores[i]
        if best < 0 or _beats(offer, score, scored[best].offer, scored[best].score):
            best = len(scored)
        scored.append(Scored(offer, None, means[i], score))
    return scored, best


def exploration_weights(
    scored: list[Scored], best: int, top: str | None, model: ClickModel, config: PolicyConfig
) -> list[float] | None:
    """How exploration shares itself among the candidates; None: uniformly.

    A candidate whose click rate, among visitors with the same strongest interest, can no
    longer plausibly reach what the greedy choice is expected to earn (its
    :meth:`ClickModel.ceiling` is below the greedy offer's click probability) is *ruled out*:
    it keeps ``ruled_out_weight`` of a plausible candidate's share, so exploration goes where
    it can still find something better. The tallies start over when the trainer restarts
    exploration (drift), so every offer is plausible again after a drift.
    """
    if config.ceiling_z <= 0 or len(scored) < 2:
        return None
    target = scored[best].p_click
    weights = [
        1.0
        if i == best or model.ceiling(tally_key(item.offer.id, top), z=config.ceiling_z) >= target
        else config.ruled_out_weight
        for i, item in enumerate(scored)
    ]
    return None if min(weights) == 1.0 else weights


def selection_probabilities(
    k: int, best: int, epsilon: float, weights: list[float] | None = None
) -> list[float]:
    """Probability of each of ``k`` candidates (``best`` is the greedy one): epsilon spread by
    ``weights`` (None: uniformly), the rest on the greedy one.

    >>> selection_probabilities(4, 2, 0.2)
    [0.05, 0.05, 0.8500000000000001, 0.05]
    >>> [round(p, 4) for p in selection_probabilities(4, 2, 0.2, [1.0, 0.1, 1.0, 1.0])]
    [0.0645, 0.0065, 0.8645, 0.0645]
    """
    if k == 1:
        return [1.0]
    if weights is None:
        return [epsilon / k + ((1.0 - epsilon) if i == best else 0.0) for i in range(k)]
    total = sum(weights)
    return [epsilon * w / total + ((1.0 - epsilon) if i == best else 0.0) for i, w in enumerate(weights)]


def action_probabilities(
    catalogue: Catalogue,
    offer_ids: list[str] | tuple[str, ...],
    ctx: DecisionContext,
    model: ClickModel,
    config: PolicyConfig,
) -> dict[str, float]:
    """The policy's probability of each of these (eligible) offers for ``ctx``, holdout aside.

    What the offline evaluator needs to score this policy on logged decisions
    whose eligible offers are ``offer_ids``.
    """
    offers = [offer for offer in (catalogue.get(i) for i in offer_ids) if offer is not None]
    if not offers:
        return {}
    choice = choose_among(offers, ctx, model, config)
    return {item.offer.id: p for item, p in zip(choice.scored, choice.probabilities, strict=True)}


def fallback_decision(
    catalogue: Catalogue, slot: str, ctx: DecisionContext, *, reason: str, now_ms: int | None = None
) -> Decision:
    """The slot's default when the visitor's data cannot be read (Redis down): rules without caps."""
    eligible, excluded = split_eligible(catalogue, slot, ctx, now_ms=now_ms, counts=None)
    excluded_candidates = tuple(Candidate(o.id, str(r), None, None, 0.0) for o, r in excluded)
    if not eligible:
        return _empty_decision(slot, ctx, excluded_candidates, holdout=False, model_version=None)
    # No features: the visitor's real context is unknown, so its reward must not be learned.
    return _default_decision(slot, eligible, excluded_candidates, ctx, reason, False, None)


def _with_features(decision: Decision) -> Decision:
    if decision.offer is None:
        return decision
    return replace(decision, features=offer_features(context_parts(decision.context), decision.offer))


def _empty_decision(
    slot: str,
    ctx: DecisionContext,
    excluded: tuple[Candidate, ...],
    *,
    holdout: bool,
    model_version: str | None,
) -> Decision:
    return Decision(
        slot=slot,
        offer=None,
        propensity=0.0,
        reason=REASON_NO_OFFER,
        personalised=False,
        holdout=holdout,
        explored=False,
        epsilon=0.0,
        model_version=model_version,
        context=ctx,
        candidates=excluded,
    )


def _default_decision(
    slot: str,
    eligible: list[Offer],
    excluded: tuple[Candidate, ...],
    ctx: DecisionContext,
    reason: str,
    holdout: bool,
    model_version: str | None,
) -> Decision:
    defaults = [offer for offer in eligible if offer.default] or eligible
    chosen = min(defaults, key=lambda offer: (-offer.priority, -offer.margin, offer.id))
    candidates = tuple(
        Candidate(offer.id, None, None, None, 1.0 if offer is chosen else 0.0) for offer in eligible
    )
    return Decision(
        slot=slot,
        offer=chosen,
        propensity=1.0,
        reason=reason,
        personalised=False,
        holdout=holdout,
        explored=False,
        epsilon=0.0,
        model_version=model_version,
        context=ctx,
        candidates=candidates + excluded,
    )


def _beats(offer: Offer, score: float, other: Offer, other_score: float) -> bool:
    """Whether ``offer`` ranks above ``other``: score, then priority, then the smaller id."""
    if score != other_score:
        return score > other_score
    if offer.priority != other.priority:
        return offer.priority > other.priority
    return offer.id < other.id


def _reason(model: ClickModel, x: dict[str, float], offer: Offer, ctx: DecisionContext) -> str:
    """The visitor fact that pushed the chosen offer's score up the most."""
    for name, contribution in model.contributions(x):
        if contribution <= 0:
            break
        if name == offer.id or name.startswith("c="):
            continue  # the offer's popularity, or its category's in this kind of page/cart/session
        if name == MATCH_INTEREST:
            levels = ctx.interests
            return "interest:" + max(offer.categories, key=lambda c: (levels.get(c, 0.0), c))
        if name == MATCH_PAGE:
            return f"page:{ctx.page_category}"
        suffix = name.split("|", 1)[1]
        kind, _, value = suffix.partition("=")
        if kind in ("int", "top"):
            return f"interest:{value}"
        if kind == "pcat":
            return f"page:{value}"
        if kind == "seg":
            return f"segment:{value}"
        return f"context:{suffix}"
    return REASON_POPULAR
