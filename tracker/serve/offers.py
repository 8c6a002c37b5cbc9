"""``GET /v1/offers``: the banner to show one visitor in one slot, now.

One Redis round trip per request (:class:`~tracker.serve.store.VisitorStore`:
profile and serving state in one script call), then pure ranking against the
in-process catalogue. The request always gets an answer: if Redis is slow,
down, or cut off by the circuit breaker, or the stored profile cannot be read,
the slot's default offer is served with ``fallback: true`` within
``TRACKER_REDIS_TIMEOUT_SECONDS`` (at once while the breaker is open).

Reasons in the response (machine-readable): ``interest:<category>``,
``default`` (known visitor, no interest strong enough), ``no_profile``
(visitor never seen), ``redis_unavailable``, ``circuit_open`` and
``profile_unreadable`` (fallbacks), ``no_offer`` (nothing can fill the slot).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, TypeAdapter, ValidationError

from tracker.models.catalogue import Catalogue, Offer, SlotId
from tracker.models.profile import Profile
from tracker.models.ranking import Choice, choose_default, choose_offer
from tracker.schema import SiteId, VisitorId
from tracker.serve.decisions import DECISION_SCHEMA_VERSION, DecisionLog
from tracker.serve.metrics import OfferMetrics, Outcome
from tracker.serve.store import REASON_STATE_UNREADABLE, StoreUnavailable, VisitorStore
from tracker.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["offers"])

OFFERS_PATH = "/v1/offers"
REASON_NO_PROFILE = "no_profile"
REASON_NO_OFFER = "no_offer"
# Personalised: no shared cache may keep it.
NO_STORE = {"Cache-Control": "no-store"}
_QUERY_TYPES: tuple[tuple[str, TypeAdapter[str]], ...] = (
    ("site", TypeAdapter(SiteId)),
    ("visitor", TypeAdapter(VisitorId)),
    ("slot", TypeAdapter(SlotId)),
)


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
) -> Response:
    """The reference implementation and the OpenAPI description; in a running API,
    :class:`~tracker.serve.fastpath.OfferFastPath` answers this path before FastAPI
    routing (same parameters, same :func:`answer`, same body)."""
    body = await answer(request.app.state, site, visitor, slot)
    return Response(body, media_type="application/json", headers=NO_STORE)


def parse_offer_query(query_string: bytes) -> tuple[tuple[str, str, str] | None, list[dict[str, Any]]]:
    """``(site, visitor, slot)`` from a raw query string, or pydantic-style errors for a 422.

    Validates with the same types as :func:`get_offer`; a repeated parameter's last value wins.
    """
    params = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
    values: list[str] = []
    errors: list[dict[str, Any]] = []
    for name, adapter in _QUERY_TYPES:
        raw = params.get(name)
        if raw is None:
            errors.append({"loc": ("query", name), "type": "missing", "msg": "Field required"})
            continue
        try:
            values.append(adapter.validate_python(raw))
        except ValidationError as exc:
            errors.extend({**error, "loc": ("query", name)} for error in exc.errors(include_url=False))
    if errors:
        return None, errors
    site, visitor, slot = values
    return (site, visitor, slot), []


async def answer(state: Any, site: str, visitor: str, slot: str) -> bytes:
    """Decide, log the decision (never waiting for Kafka), count, and return the JSON body.

    ``state`` is the app's ``app.state`` (read directly: FastAPI's dependency resolution
    was a large share of this path's CPU time, see docs/BENCHMARKS.md).
    """
    started = time.perf_counter()
    settings: Settings = state.settings
    metrics: OfferMetrics = state.metrics
    decisions: DecisionLog = state.decisions
    now_ms = time.time_ns() // 1_000_000
    choice, reason, fallback = await _decide(
        site, visitor, slot, now_ms, settings, state.catalogue.value, state.store
    )

    outcome: Outcome
    if choice is None:
        outcome = "empty"
    elif fallback:
        outcome = "fallback"
    else:
        outcome = "personalised" if choice.personalised else "default"

    decision_id = os.urandom(16).hex()  # a random 128-bit id, like uuid4 without its object
    body = {
        "decision_id": decision_id,
        "slot": slot,
        "offer": _public(choice.offer) if choice else None,
        "personalised": bool(choice and choice.personalised),
        "reason": reason,
        "fallback": fallback,
    }
    if choice is not None:
        decisions.log(_decision_record(decision_id, site, visitor, slot, choice, reason, fallback, now_ms))
    metrics.outcome(outcome).inc()
    metrics.duration.observe(time.perf_counter() - started)
    return orjson.dumps(body)


async def _decide(
    site: str,
    visitor: str,
    slot: str,
    now_ms: int,
    settings: Settings,
    catalogue: Catalogue,
    store: VisitorStore,
) -> tuple[Choice | None, str, bool]:
    """The choice, the reason to report, and whether it is a fallback."""
    if not catalogue.offers_for_slot(slot):
        # Nothing could fill the slot whatever the profile says: skip the Redis round trip.
        return None, REASON_NO_OFFER, False
    try:
        state = await store.read(site, visitor)
        # (#6) frequency caps and the holdout assignment arrive in state.serving, same round trip.
        profile = Profile.from_dict(orjson.loads(state.profile)) if state.profile is not None else None
    except StoreUnavailable as exc:
        return _fallback(catalogue, slot, now_ms, exc.reason)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("unreadable profile for site %s: %s", site, exc)
        return _fallback(catalogue, slot, now_ms, REASON_STATE_UNREADABLE)
    if profile is None:
        choice = choose_default(catalogue, slot, now_ms=now_ms)
        return choice, REASON_NO_PROFILE if choice else REASON_NO_OFFER, False
    interests = profile.interests_at(now_ms, half_life_seconds=settings.interest_half_life_seconds)
    choice = choose_offer(
        catalogue, slot, interests, min_interest=settings.min_interest_to_personalise, now_ms=now_ms
    )
    return choice, choice.reason if choice else REASON_NO_OFFER, False


def _fallback(catalogue: Catalogue, slot: str, now_ms: int, reason: str) -> tuple[Choice | None, str, bool]:
    choice = choose_default(catalogue, slot, now_ms=now_ms)
    return choice, reason if choice else REASON_NO_OFFER, True


def _public(offer: Offer) -> dict[str, Any]:
    return {
        "id": offer.id,
        "title": offer.title,
        "body": offer.body,
        "image": offer.image,
        "link": offer.link,
        "cta": offer.cta,
    }


def _decision_record(
    decision_id: str,
    site: str,
    visitor: str,
    slot: str,
    choice: Choice,
    reason: str,
    fallback: bool,
    now_ms: int,
) -> dict[str, Any]:
    """The record on the ``decisions`` topic, joined later with impressions, clicks and purchases."""
    return {
        "schema_version": DECISION_SCHEMA_VERSION,
        "decision_id": decision_id,
        "site_id": site,
        "visitor_id": visitor,
        "slot": slot,
        "offer_id": choice.offer.id,
        "personalised": choice.personalised,
        "reason": reason,
        "score": choice.score,
        # The ranking is deterministic: the chosen offer had probability 1 under the policy.
        "propensity": 1.0,
        "fallback": fallback,
        "ts": now_ms,
    }
