"""Request dependencies of the offer API, as ``Annotated`` aliases.

Everything a route needs is built once by the app's lifespan and kept on
``app.state``; these accessors hand it to routes, and tests can replace any of
them with ``app.dependency_overrides``. ``require_admin`` and
``privacy_rate_limit`` are the guards of the privacy endpoints.

Every dependency is ``async def`` although none awaits: FastAPI runs a plain
``def`` dependency in a worker thread, a thread hop per dependency per request
that cost the offer path most of its time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from tracker.kafka_producer import KafkaBatchProducer
from tracker.models.catalogue import Catalogue
from tracker.serve.decisions import DecisionLog
from tracker.serve.metrics import UNMATCHED, OfferMetrics
from tracker.serve.ratelimit import RateLimiter
from tracker.serve.store import VisitorStore
from tracker.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> OfferMetrics:
    return request.app.state.metrics


async def get_catalogue(request: Request) -> Catalogue:
    """The catalogue as of now (swapped in place by the refresh task; never I/O here)."""
    return request.app.state.catalogue.value


async def get_store(request: Request) -> VisitorStore:
    return request.app.state.store


async def get_decision_log(request: Request) -> DecisionLog:
    return request.app.state.decisions


async def get_producer(request: Request) -> KafkaBatchProducer:
    return request.app.state.kafka


async def get_privacy_limiter(request: Request) -> RateLimiter:
    return request.app.state.privacy_limiter


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[OfferMetrics, Depends(get_metrics)]
CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
StoreDep = Annotated[VisitorStore, Depends(get_store)]
DecisionLogDep = Annotated[DecisionLog, Depends(get_decision_log)]
ProducerDep = Annotated[KafkaBatchProducer, Depends(get_producer)]


async def privacy_rate_limit(
    request: Request,
    limiter: Annotated[RateLimiter, Depends(get_privacy_limiter)],
    metrics: MetricsDep,
) -> None:
    """429 with ``Retry-After`` once this client address has used its burst."""
    client = request.client.host if request.client else "unknown"
    # The route template, not the URL: /v1/admin/erase/<id> shares one bucket whatever the id.
    handler = getattr(request.scope.get("route"), "path", UNMATCHED)
    wait = limiter.acquire((handler, client))
    if wait > 0:
        metrics.rate_limited.labels(handler=handler).inc()
        raise HTTPException(
            429,
            "too many privacy requests from this address; retry after the Retry-After delay",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


async def require_admin(request: Request, settings: SettingsDep) -> None:
    """401 unless ``Authorization: Bearer <TRACKER_ADMIN_TOKEN>``, compared in constant time."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    # Hash both sides first so that the comparison time depends on neither value nor length.
    given = hashlib.sha256(token.strip().encode()).digest()
    expected = hashlib.sha256(settings.admin_token.encode()).digest()
    if scheme.lower() != "bearer" or not token.strip() or not hmac.compare_digest(given, expected):
        raise HTTPException(
            401,
            "admin endpoints need the header Authorization: Bearer <TRACKER_ADMIN_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )
