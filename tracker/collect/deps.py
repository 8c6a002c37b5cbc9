"""FastAPI dependencies of the collector, named with ``Annotated`` aliases.

Each reads the :class:`CollectorState` that :func:`~tracker.collect.app.create_app` put on
``app.state``; tests can swap any of them with ``app.dependency_overrides``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from tracker.collect.enrich import Network
from tracker.collect.inflight import InflightBuffer, RequestSlots
from tracker.collect.metrics import CollectorMetrics
from tracker.collect.ratelimit import TokenBucketLimiter
from tracker.collect.sites import SiteRegistry
from tracker.kafka_producer import BatchProducer
from tracker.settings import Settings


@dataclass(frozen=True)
class CollectorState:
    """Everything one collector app holds: built once in ``create_app``."""

    settings: Settings
    producer: BatchProducer
    metrics: CollectorMetrics
    sites: SiteRegistry
    inflight: InflightBuffer
    slots: RequestSlots
    # None when TRACKER_RATE_LIMIT_PER_SECOND is 0.
    limiter: TokenBucketLimiter | None
    trusted_proxies: tuple[Network, ...]


# async: FastAPI runs plain ``def`` dependencies in a thread pool, a costly hop per request.
async def get_state(request: Request) -> CollectorState:
    return request.app.state.collector


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.collector.settings


async def get_producer(request: Request) -> BatchProducer:
    return request.app.state.collector.producer


async def get_metrics(request: Request) -> CollectorMetrics:
    return request.app.state.collector.metrics


async def get_sites(request: Request) -> SiteRegistry:
    return request.app.state.collector.sites


StateDep = Annotated[CollectorState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ProducerDep = Annotated[BatchProducer, Depends(get_producer)]
MetricsDep = Annotated[CollectorMetrics, Depends(get_metrics)]
SitesDep = Annotated[SiteRegistry, Depends(get_sites)]
