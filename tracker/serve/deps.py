"""Request dependencies of the offer API, as ``Annotated`` aliases.

Everything a route needs is built once by the app's lifespan and kept on
``app.state``; these accessors hand it to routes, and tests can replace any of
them with ``app.dependency_overrides``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from tracker.models.catalogue import Catalogue
from tracker.serve.decisions import DecisionLog
from tracker.serve.metrics import OfferMetrics
from tracker.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> OfferMetrics:
    return request.app.state.metrics


def get_catalogue(request: Request) -> Catalogue:
    return request.app.state.catalogue


def get_redis(request: Request) -> Redis:
    return request.app.state.redis


def get_decision_log(request: Request) -> DecisionLog:
    return request.app.state.decisions


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[OfferMetrics, Depends(get_metrics)]
CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
RedisDep = Annotated[Redis, Depends(get_redis)]
DecisionLogDep = Annotated[DecisionLog, Depends(get_decision_log)]
