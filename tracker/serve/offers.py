"""``GET /v1/offers``: the banner to show one visitor in one slot, now.

One Redis GET per request (the visitor's profile), then pure ranking. The
request always gets an answer: if Redis is slow or down, or the stored profile
cannot be read, the slot's default offer is served with ``fallback: true``
within ``redis_timeout_seconds``.

Reasons in the response (machine-readable): ``interest:<category>``,
``default`` (known visitor, no interest strong enough), ``no_profile``
(visitor never seen), ``redis_unavailable`` and ``profile_unreadable``
(fallbacks), ``no_offer`` (nothing can fill the slot).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tracker import keys
from tracker.models.catalogue import Catalogue, Offer, SlotId
from tracker.models.profile import Profile
from tracker.models.ranking import Choice, choose_default, choose_offer
from tracker.schema import SiteId, VisitorId
from tracker.serve.decisions import DECISION_SCHEMA_VERSION
from tracker.serve.deps import CatalogueDep, DecisionLogDep, MetricsDep, RedisDep, SettingsDep
from tracker.serve.metrics import Outcome
from tracker.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["offers"])

REASON_NO_PROFILE = "no_profile"
REASON_REDIS_UNAVAILABLE = "redis_unavailable"
REASON_PROFILE_UNREADABLE = "profile_unreadable"
REASON_NO_OFFER = "no_offer"


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


class ProfileUnavailable(Exception):
    """The profile could not be read in time; ``reason`` says why, for the response."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def read_profile(
    redis: Redis, site_id: str, visitor_id: str, *, budget_seconds: float
) -> Profile | None:
    """The visitor's profile (one GET), None if never seen; raise :class:`ProfileUnavailable`."""
    try:
        # The socket timeouts bound each read; this bounds connect + send + read together.
        async with asyncio.timeout(budget_seconds):
            raw = await redis.get(keys.profile(site_id, visitor_id))
    except (RedisError, OSError, TimeoutError) as exc:
        log.debug("profile read failed: %r", exc)
        raise ProfileUnavailable(REASON_REDIS_UNAVAILABLE) from exc
    if raw is None:
        return None
    try:
        return Profile.from_dict(orjson.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("unreadable profile for site %s: %s", site_id, exc)
        raise ProfileUnavailable(REASON_PROFILE_UNREADABLE) from exc


@router.get(
    "/v1/offers",
    response_model=None,
    responses={200: {"model": OfferResponse}},
    summary="Choose the offer to show a visitor in a slot",
)
async def get_offer(
    site: Annotated[SiteId, Query()],
    visitor: Annotated[VisitorId, Query()],
    slot: Annotated[SlotId, Query()],
    settings: SettingsDep,
    catalogue: CatalogueDep,
    redis: RedisDep,
    decisions: DecisionLogDep,
    metrics: MetricsDep,
) -> Response:
    started = time.perf_counter()
    now_ms = time.time_ns() // 1_000_000
    choice, reason, fallback = await _decide(site, visitor, slot, now_ms, settings, catalogue, redis)

    outcome: Outcome
    if choice is None:
        outcome = "empty"
    elif fallback:
        outcome = "fallback"
    else:
        outcome = "personalised" if choice.personalised else "default"

    decision_id = uuid.uuid4().hex
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
    metrics.requests.labels(outcome=outcome).inc()
    metrics.duration.observe(time.perf_counter() - started)
    # Personalised: no shared cache may keep it.
    return Response(orjson.dumps(body), media_type="application/json", headers={"Cache-Control": "no-store"})


async def _decide(
    site: str,
    visitor: str,
    slot: str,
    now_ms: int,
    settings: Settings,
    catalogue: Catalogue,
    redis: Redis,
) -> tuple[Choice | None, str, bool]:
    """The choice, the reason to report, and whether it is a fallback."""
    if not catalogue.offers_for_slot(slot):
        # Nothing could fill the slot whatever the profile says: skip the Redis round trip.
        return None, REASON_NO_OFFER, False
    try:
        profile = await read_profile(redis, site, visitor, budget_seconds=settings.redis_timeout_seconds)
    except ProfileUnavailable as exc:
        choice = choose_default(catalogue, slot, now_ms=now_ms)
        return choice, exc.reason if choice else REASON_NO_OFFER, True
    if profile is None:
        choice = choose_default(catalogue, slot, now_ms=now_ms)
        return choice, REASON_NO_PROFILE if choice else REASON_NO_OFFER, False
    interests = profile.interests_at(now_ms, half_life_seconds=settings.interest_half_life_seconds)
    choice = choose_offer(
        catalogue, slot, interests, min_interest=settings.min_interest_to_personalise, now_ms=now_ms
    )
    return choice, choice.reason if choice else REASON_NO_OFFER, False


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
