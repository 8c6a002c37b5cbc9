"""Privacy endpoints: erase a visitor (admin) and let a visitor read their own profile.

``POST /v1/admin/erase`` (``Authorization: Bearer <TRACKER_ADMIN_TOKEN>``) writes
an :class:`~tracker.schema.ErasureRequest` to ``erasures`` and answers 202 only
once Kafka acknowledged it; 503 with ``Retry-After`` otherwise (retry with the
same ``request_id``). ``GET /v1/admin/erase/<request_id>`` then says whether the
stream workers have carried it out (their confirmation in Redis).

``GET /v1/me`` returns everything stored about one visitor, to that visitor,
authorised in one of two ways:

- a **signed link** made by the site's server (``visitor``, ``expires``, ``sig``;
  see :mod:`tracker.serve.access`), for a "my data" page or an e-mailed link;
- the visitor's own **first-party cookie** (``TRACKER_VISITOR_COOKIE_NAME``, set
  HttpOnly by the collector on the site's domain): a browser that holds it may
  read the profile of that id, when the offer API is served under the same site
  (e.g. ``offers.shop.example``). ``visitor`` may then be left out.

All three are rate-limited per client address (``TRACKER_PRIVACY_RATE_*``),
answer ``Cache-Control: no-store``, and never allow cross-origin reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from redis.exceptions import RedisError

from tracker import keys
from tracker.errors import DeliveryError
from tracker.models.profile import Profile
from tracker.schema import SiteId, VisitorId
from tracker.serve.access import verify_access
from tracker.serve.deps import (
    MetricsDep,
    ProducerDep,
    SettingsDep,
    StoreDep,
    privacy_rate_limit,
    require_admin,
)
from tracker.serve.erasures import request_erasure
from tracker.serve.metrics import OfferMetrics
from tracker.serve.store import StoreUnavailable
from tracker.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["privacy"])

_VISITOR_ID: TypeAdapter[str] = TypeAdapter(VisitorId)
_NO_STORE = {"Cache-Control": "no-store"}


class EraseBody(BaseModel):
    """Body of ``POST /v1/admin/erase``."""

    model_config = ConfigDict(extra="forbid")

    site_id: SiteId
    visitor_id: VisitorId
    request_id: Annotated[
        str | None,
        Field(pattern=r"^[0-9a-f]{32}$", description="Idempotency key (UUID hex); generated if absent."),
    ] = None


@router.post(
    "/v1/admin/erase",
    status_code=202,
    dependencies=[Depends(privacy_rate_limit), Depends(require_admin)],
    summary="Erase a visitor: queue the erasure on Kafka (answers once Kafka acknowledged)",
)
async def erase(
    body: EraseBody, producer: ProducerDep, settings: SettingsDep, metrics: MetricsDep
) -> Response:
    request_id = body.request_id or uuid.uuid4().hex
    try:
        record = await request_erasure(
            producer, settings, site_id=body.site_id, visitor_id=body.visitor_id, request_id=request_id
        )
    except DeliveryError as exc:
        metrics.erasures.labels(result="unavailable").inc()
        raise HTTPException(
            503, str(exc), headers={"Retry-After": str(settings.retry_after_seconds), **_NO_STORE}
        ) from exc
    metrics.erasures.labels(result="accepted").inc()
    body_out = {"status": "accepted", **record.model_dump(exclude={"schema_version"})}
    return Response(orjson.dumps(body_out), status_code=202, media_type="application/json", headers=_NO_STORE)


@router.get(
    "/v1/admin/erase/{request_id}",
    dependencies=[Depends(privacy_rate_limit), Depends(require_admin)],
    summary="Whether an erasure request has been carried out by the stream workers",
)
async def erasure_status(
    request_id: Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$")], store: StoreDep
) -> Response:
    """``done`` with the workers' confirmation once they erased the visitor, else ``pending``
    (also for an id never submitted: requests are not stored before they are carried out)."""
    try:
        async with asyncio.timeout(store.timeout_seconds * 10):
            raw = await store.redis.get(keys.erasure_done(request_id))
    except (RedisError, OSError, TimeoutError) as exc:
        raise HTTPException(
            503, "erasure confirmations cannot be read right now; retry later", headers={"Retry-After": "5"}
        ) from exc
    body: dict[str, Any] = {"request_id": request_id, "status": "pending"}
    if raw is not None:
        body = {**orjson.loads(raw), "request_id": request_id, "status": "done"}
    return Response(orjson.dumps(body), media_type="application/json", headers=_NO_STORE)


@router.get(
    "/v1/me",
    dependencies=[Depends(privacy_rate_limit)],
    summary="A visitor's own profile, via a signed link or their first-party cookie",
)
async def me(
    request: Request,
    site: Annotated[SiteId, Query()],
    settings: SettingsDep,
    store: StoreDep,
    metrics: MetricsDep,
    visitor: Annotated[VisitorId | None, Query()] = None,
    expires: Annotated[int | None, Query(ge=0, description="Unix seconds (signed links).")] = None,
    sig: Annotated[str | None, Query(max_length=128, description="Signature (signed links).")] = None,
) -> Response:
    visitor_id = _authorised_visitor(
        request, settings, metrics, site=site, visitor=visitor, expires=expires, sig=sig
    )
    try:
        state = await store.read(site, visitor_id)
    except StoreUnavailable as exc:
        raise HTTPException(
            503, "profiles cannot be read right now; retry later", headers={"Retry-After": "5", **_NO_STORE}
        ) from exc
    now_ms = time.time_ns() // 1_000_000
    stored: dict[str, Any] | None = None
    interests: dict[str, float] = {}
    if state.profile is not None:
        try:
            stored = orjson.loads(state.profile)
            decayed = Profile.from_dict(stored).interests_at(
                now_ms, half_life_seconds=settings.interest_half_life_seconds
            )
            interests = {category: round(score, 4) for category, score in decayed.items()}
        except (ValueError, KeyError, TypeError) as exc:
            # Still show what is stored (if it is JSON): the visitor's copy must not hide data.
            log.warning("self-access: profile layout not understood for site %s: %s", site, exc)
    caps: dict[str, Any] | None = None
    if state.caps is not None:
        try:
            caps = orjson.loads(state.caps)
        except ValueError as exc:
            log.warning("self-access: frequency-cap counts not JSON for site %s: %s", site, exc)
    body = {
        "site_id": site,
        "visitor_id": visitor_id,
        # Everything stored, as stored: nothing about the visitor is left out of their own copy.
        "profile": stored,
        "interests": interests,
        "segment": stored.get("segment") if stored else None,
        "recent_offers": _recent_offers(caps),
        "frequency_caps": caps,
        "retention_seconds": settings.profile_retention_seconds,
    }
    return Response(orjson.dumps(body), media_type="application/json", headers=_NO_STORE)


def _authorised_visitor(
    request: Request,
    settings: Settings,
    metrics: OfferMetrics,
    *,
    site: str,
    visitor: str | None,
    expires: int | None,
    sig: str | None,
) -> str:
    """The visitor id this request may read, or an HTTPException (401/403) saying why not."""
    signing_key, cookie_name = settings.access_signing_key, settings.visitor_cookie_name
    if sig is not None or expires is not None:
        if sig is None or expires is None or visitor is None:
            metrics.self_access.labels(result="denied").inc()
            raise HTTPException(403, "a signed link needs visitor, expires and sig together")
        if not signing_key:
            metrics.self_access.labels(result="denied").inc()
            raise HTTPException(403, "signed access links are not enabled on this server")
        if not verify_access(site, visitor, expires, sig, signing_key, now=time.time()):
            metrics.self_access.labels(result="denied").inc()
            raise HTTPException(403, "the access link is invalid or has expired; ask the site for a new one")
        metrics.self_access.labels(result="signed_link").inc()
        return visitor
    cookie = request.cookies.get(cookie_name)
    if cookie is None or not _is_visitor_id(cookie):
        metrics.self_access.labels(result="denied").inc()
        raise HTTPException(
            401, f"open this from a signed link, or from a browser holding the {cookie_name} cookie"
        )
    if visitor is not None and visitor != cookie:
        metrics.self_access.labels(result="denied").inc()
        raise HTTPException(403, "the visitor cookie belongs to another visitor id")
    metrics.self_access.labels(result="cookie").inc()
    return cookie


def _is_visitor_id(value: str) -> bool:
    try:
        _VISITOR_ID.validate_python(value)
    except ValidationError:
        return False
    return True


def _recent_offers(caps: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Offers shown to the visitor on their last day with offers (the caps' ``today`` counts)."""
    today = (caps or {}).get("today")
    if not isinstance(today, dict):
        return []
    offers = [{"offer_id": str(offer), "impressions": n} for offer, n in today.items() if isinstance(n, int)]
    return sorted(offers, key=lambda offer: (-offer["impressions"], offer["offer_id"]))
