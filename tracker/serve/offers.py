"""``GET /v1/offers``: the banner to show one visitor in one slot, now (and its explanation).

One Redis round trip per request (:class:`~tracker.serve.store.VisitorStore`:
profile and frequency-cap counts in one ``MGET``; the API never writes them),
then the pure policy (:func:`tracker.models.policy.decide`: rules and caps,
holdout, click model, exploration; docs/DECISIONS.md) against the in-process
catalogue and click model (:mod:`tracker.serve.snapshots`). The request
always gets an answer: if Redis is slow, down, or cut off by the circuit
breaker, or the stored profile cannot be read, the slot's default offer is
served with ``fallback: true`` within ``TRACKER_REDIS_TIMEOUT_SECONDS`` (at
once while the breaker is open). After answering, the decision goes to the
``decisions`` topic in the background (:mod:`tracker.serve.decisions`: never
waited for); the stream worker joins it with its feedback and counts its offer
towards the visitor's frequency caps (the one writer of the counts).

Optional query parameters describe the page: ``page`` (its path, for the
catalogue's ``pages`` rules), ``page_type`` (``home``, ``category``,
``product``...), ``category`` (what the page is about), ``device``
(``desktop``, ``mobile``, ``tablet``) and ``cart`` (the cart's value).

Until the trainer publishes a click model, the API decides with the
untrained model (version ``0000000000-<hash>``): its priors rank offers about the
visitor's interests (or the page's category) first; it does not explore, and
where nothing about the visitor counts it serves the slot's default rather
than whichever offer the margin tie-break would pick.

Reasons in the response (machine-readable):

- a model choice, by the visitor fact that weighed most: ``interest:<category>``,
  ``page:<category>``, ``segment:<id>``, ``context:<feature>`` (device, new or
  returning), or ``popular`` (nothing about the visitor: the offer's learned
  click rate);
- ``explore``: a random candidate (epsilon-greedy), ``personalised: false``;
- ``holdout``: the visitor is in the control group and gets the default
  (``holdout: true``, ``personalised: false``);
- ``no_profile`` (visitor never seen) and ``default`` (known visitor, nothing
  about them counts): the default, while the model is untrained;
- ``redis_unavailable``, ``circuit_open`` and ``profile_unreadable``: fallbacks;
- ``no_offer``: nothing can fill the slot.

``GET /v1/offers/explain`` (admin token) shows an operator how one decision
would be made: every offer of the slot with its exclusion rule or its click
probability, score, probability and top features. It logs nothing and counts
no impression.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field, replace
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from tracker.models.caps import ImpressionCounts
from tracker.models.catalogue import Catalogue, DeviceClass, Offer, SlotId
from tracker.models.features import DecisionContext, context_from_profile
from tracker.models.learner import ClickModel
from tracker.models.policy import (
    REASON_NO_OFFER,
    REASON_POPULAR,
    Decision,
    PolicyConfig,
    decide,
    fallback_decision,
)
from tracker.models.profile import Profile
from tracker.models.slot_scores import SlotScorers
from tracker.schema import Category, SiteId, VisitorId
from tracker.serve.decisions import DECISION_SCHEMA_VERSION, DecisionLog
from tracker.serve.deps import privacy_rate_limit, require_admin
from tracker.serve.metrics import OfferMetrics, Outcome
from tracker.serve.store import REASON_STATE_UNREADABLE, StoreUnavailable
from tracker.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["offers"])

OFFERS_PATH = "/v1/offers"
EXPLAIN_PATH = "/v1/offers/explain"
REASON_NO_PROFILE = "no_profile"
REASON_DEFAULT = "default"
# Personalised: no shared cache may keep it.
NO_STORE = {"Cache-Control": "no-store"}

PagePath = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^/\S*$")]
PageType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
CartValue = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]

_REQUIRED: tuple[tuple[str, TypeAdapter[Any]], ...] = (
    ("site", TypeAdapter(SiteId)),
    ("visitor", TypeAdapter(VisitorId)),
    ("slot", TypeAdapter(SlotId)),
)
_OPTIONAL: tuple[tuple[str, TypeAdapter[Any]], ...] = (
    ("page", TypeAdapter(PagePath)),
    ("page_type", TypeAdapter(PageType)),
    ("category", TypeAdapter(Category)),
    ("device", TypeAdapter(DeviceClass)),
    ("cart", TypeAdapter(CartValue)),
)


@dataclass(frozen=True, slots=True)
class OfferQuery:
    """The validated parameters of ``GET /v1/offers`` (and of its explain twin)."""

    site: str
    visitor: str
    slot: str
    page: str | None = None
    page_type: str | None = None
    category: str | None = None
    device: str | None = None
    cart: float | None = None


class OfferPublic(BaseModel):
    """The banner as the page renders it."""

    id: str
    title: str
    body: str
    image: str | None
    link: str
    cta: str


class OfferResponse(BaseModel):
    """What ``GET /v1/offers`` answers (documentation; the route serialises with orjson)."""

    decision_id: str
    slot: str
    offer: OfferPublic | None
    personalised: bool
    reason: str
    fallback: bool
    holdout: bool
    model_version: str | None


@router.get(
    OFFERS_PATH,
    response_model=None,
    responses={200: {"model": OfferResponse}},
    summary="Choose the offer to show a visitor in a slot",
)
async def get_offer(
    request: Request,
    site: Annotated[SiteId, Query()],
    visitor: Annotated[VisitorId, Query()],
    slot: Annotated[SlotId, Query()],
    page: Annotated[PagePath | None, Query(description="Path of the page.")] = None,
    page_type: Annotated[PageType | None, Query(description="home, category, product...")] = None,
    category: Annotated[Category | None, Query(description="Category the page is about.")] = None,
    device: Annotated[DeviceClass | None, Query()] = None,
    cart: Annotated[CartValue | None, Query(description="Value of the visitor's cart.")] = None,
) -> Response:
    """The reference implementation and the OpenAPI description; in a running API,
    :func:`~tracker.serve.fastpath.answer_offers` answers this path before FastAPI
    routing (same parameters, same :func:`answer`, same body)."""
    query = OfferQuery(site, visitor, slot, page, page_type, category, device, cart)
    body = await answer(request.app.state, query)
    return Response(body, media_type="application/json", headers=NO_STORE)


@router.get(
    EXPLAIN_PATH,
    dependencies=[Depends(privacy_rate_limit), Depends(require_admin)],
    summary="How the offer for a visitor and slot would be chosen (operators; logs nothing)",
)
async def explain_offer(
    request: Request,
    site: Annotated[SiteId, Query()],
    visitor: Annotated[VisitorId, Query()],
    slot: Annotated[SlotId, Query()],
    page: Annotated[PagePath | None, Query()] = None,
    page_type: Annotated[PageType | None, Query()] = None,
    category: Annotated[Category | None, Query()] = None,
    device: Annotated[DeviceClass | None, Query()] = None,
    cart: Annotated[CartValue | None, Query()] = None,
) -> Response:
    """``decide(..., explain=True).explain()`` for this visitor now, plus ``fallback``: no
    decision is logged, no impression counted. Same parameters as ``GET /v1/offers``."""
    query = OfferQuery(site, visitor, slot, page, page_type, category, device, cart)
    now_ms = time.time_ns() // 1_000_000
    decision, fallback = await decide_for(request.app.state, query, now_ms, explain=True)
    body = decision.explain() | {"site_id": site, "visitor_id": visitor, "fallback": fallback}
    return Response(orjson.dumps(body), media_type="application/json", headers=NO_STORE)


def parse_offer_query(query_string: bytes) -> tuple[OfferQuery | None, list[dict[str, Any]]]:
    """The parameters from a raw query string, or pydantic-style errors for a 422.

    Validates with the same types as :func:`get_offer`; a repeated parameter's last value
    wins; unknown parameters are ignored.
    """
    params = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, adapter in _REQUIRED:
        raw = params.get(name)
        if raw is None:
            errors.append({"loc": ("query", name), "type": "missing", "msg": "Field required"})
            continue
        _validate(name, adapter, raw, values, errors)
    for name, adapter in _OPTIONAL:
        raw = params.get(name)
        if raw is not None:
            _validate(name, adapter, raw, values, errors)
    if errors:
        return None, errors
    return OfferQuery(**values), []


def _validate(
    name: str, adapter: TypeAdapter[Any], raw: str, values: dict[str, Any], errors: list[dict[str, Any]]
) -> None:
    try:
        values[name] = adapter.validate_python(raw)
    except ValidationError as exc:
        errors.extend({**error, "loc": ("query", name)} for error in exc.errors(include_url=False))


@dataclass(frozen=True, slots=True)
class Policy:
    """What the policy needs besides the request, built once per app."""

    config: PolicyConfig
    # The untrained model does not explore: its greedy choice is what the priors say.
    cold_config: PolicyConfig
    rng: random.Random
    # Each slot's offers scored at once for the current model (the same decisions, less CPU).
    scorers: SlotScorers = field(default_factory=SlotScorers)

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        config = PolicyConfig.from_settings(settings)
        cold = replace(config, epsilon_start=0.0, epsilon_min=0.0, epsilon_restart=0.0)
        return cls(config=config, cold_config=cold, rng=random.Random())


async def answer(state: Any, query: OfferQuery) -> bytes:
    """Decide, log the decision and count the impression (never waiting for either), count
    the outcome, and return the JSON body.

    ``state`` is the app's ``app.state`` (read directly: FastAPI's dependency resolution
    was a large share of this path's CPU time, see docs/BENCHMARKS.md).
    """
    started = time.perf_counter()
    metrics: OfferMetrics = state.metrics
    now_ms = time.time_ns() // 1_000_000
    decision, fallback = await decide_for(state, query, now_ms)
    offer = decision.offer

    outcome: Outcome
    if offer is None:
        outcome = "empty"
    elif fallback:
        outcome = "fallback"
    elif decision.holdout:
        outcome = "holdout"
    else:
        outcome = "personalised" if decision.personalised else "default"

    decision_id = os.urandom(16).hex()  # a random 128-bit id, like uuid4 without its object
    body = {
        "decision_id": decision_id,
        "slot": query.slot,
        "offer": _public(offer) if offer is not None else None,
        "personalised": decision.personalised,
        "reason": decision.reason,
        "fallback": fallback,
        "holdout": decision.holdout,
        "model_version": decision.model_version,
    }
    if offer is not None:
        decisions: DecisionLog = state.decisions
        decisions.log(decision_record(decision, decision_id, query, now_ms, fallback=fallback))
    metrics.outcome(outcome).inc()
    metrics.duration.observe(time.perf_counter() - started)
    return orjson.dumps(body)


async def decide_for(
    state: Any, query: OfferQuery, now_ms: int, *, explain: bool = False
) -> tuple[Decision, bool]:
    """The decision, and whether it is a fallback."""
    settings: Settings = state.settings
    catalogue: Catalogue = state.catalogue.value
    if not catalogue.offers_for_slot(query.slot):
        # Nothing could fill the slot whatever the profile says: skip the Redis round trip.
        return _fallback(catalogue, query, now_ms, REASON_NO_OFFER), False
    try:
        stored = await state.store.read(query.site, query.visitor)
        profile = Profile.from_dict(orjson.loads(stored.profile)) if stored.profile is not None else None
        ctx = _context(profile, query, now_ms, settings)
    except StoreUnavailable as exc:
        return _fallback(catalogue, query, now_ms, exc.reason), True
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("unreadable profile for site %s: %s", query.site, exc)
        return _fallback(catalogue, query, now_ms, REASON_STATE_UNREADABLE), True

    counts: ImpressionCounts | None = None
    if stored.caps is not None:
        try:
            counts = ImpressionCounts.from_dict(orjson.loads(stored.caps))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Counts of another layout (or damaged): decide without caps (more lenient, never stricter).
            log.warning("unreadable frequency-cap counts for site %s: %s", query.site, exc)
            state.metrics.caps_unreadable.inc()

    policy: Policy = state.policy
    model: ClickModel = state.model.value
    trained = model.updates > 0
    decision = decide(
        catalogue,
        query.slot,
        ctx,
        model=model,
        rng=policy.rng,
        site_id=query.site,
        visitor_id=query.visitor,
        config=policy.config if trained else policy.cold_config,
        now_ms=now_ms,
        counts=counts,
        explain=explain,
        scorer=policy.scorers.get(model, catalogue.offers_for_slot(query.slot)),
    )
    if not trained and decision.reason == REASON_POPULAR:
        decision = _cold_default(decision, catalogue, query, ctx, now_ms, counts, policy, profile is not None)
    return decision, False


def _cold_default(
    decision: Decision,
    catalogue: Catalogue,
    query: OfferQuery,
    ctx: DecisionContext,
    now_ms: int,
    counts: ImpressionCounts | None,
    policy: Policy,
    known: bool,
) -> Decision:
    """The slot's default instead of an untrained model's ``popular`` choice.

    An untrained model has no per-offer knowledge: when nothing about the visitor counts,
    its scores are equal and the margin tie-break alone would pick the offer. The default is
    what the catalogue names for exactly that case (features included, so the trainer learns
    from it; propensity 1).
    """
    default = decide(
        catalogue,
        query.slot,
        ctx,
        model=None,
        rng=policy.rng,
        site_id=query.site,
        visitor_id=query.visitor,
        config=policy.cold_config,
        now_ms=now_ms,
        counts=counts,
    )
    chosen = default.offer.id if default.offer is not None else None
    return replace(
        default,
        reason=REASON_DEFAULT if known else REASON_NO_PROFILE,
        model_version=decision.model_version,
        # Keep the scored candidates (explain), with the probabilities of what is served.
        candidates=tuple(
            c._replace(probability=1.0 if c.offer_id == chosen else 0.0) for c in decision.candidates
        ),
    )


def _context(profile: Profile | None, query: OfferQuery, now_ms: int, settings: Settings) -> DecisionContext:
    return context_from_profile(
        profile,
        now_ms=now_ms,
        half_life_seconds=settings.interest_half_life_seconds,
        device=query.device,
        page_type=query.page_type,
        page_path=query.page,
        page_category=query.category,
        cart_value=query.cart or 0.0,
    )


def _fallback(catalogue: Catalogue, query: OfferQuery, now_ms: int, reason: str) -> Decision:
    """The slot's default, the visitor unknown: rules on the request's context only, no caps."""
    ctx = context_from_profile(
        None,
        now_ms=now_ms,
        half_life_seconds=1.0,  # no profile: unused
        device=query.device,
        page_type=query.page_type,
        page_path=query.page,
        page_category=query.category,
        cart_value=query.cart or 0.0,
    )
    return fallback_decision(catalogue, query.slot, ctx, reason=reason, now_ms=now_ms)


def _public(offer: Offer) -> dict[str, Any]:
    return {
        "id": offer.id,
        "title": offer.title,
        "body": offer.body,
        "image": offer.image,
        "link": offer.link,
        "cta": offer.cta,
    }


def decision_record(
    decision: Decision, decision_id: str, query: OfferQuery, now_ms: int, *, fallback: bool
) -> dict[str, Any]:
    """The record on the ``decisions`` topic (schema 2), joined later with impressions, clicks
    and purchases (:meth:`tracker.models.rewards.VisitorRewards.add_decision`)."""
    return decision.log_record() | {
        "schema_version": DECISION_SCHEMA_VERSION,
        "decision_id": decision_id,
        "site_id": query.site,
        "visitor_id": query.visitor,
        "ts": now_ms,
        "fallback": fallback,
    }
