"""FastAPI dependencies of the collector, named with ``Annotated`` aliases.

Each reads what :func:`~tracker.collect.app.create_app` put on ``app.state``; tests
can swap any of them with ``app.dependency_overrides``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tracker.collect.metrics import CollectorMetrics
from tracker.collect.producer import BatchProducer
from tracker.settings import Settings


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_producer(request: Request) -> BatchProducer:
    return request.app.state.producer


def get_metrics(request: Request) -> CollectorMetrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ProducerDep = Annotated[BatchProducer, Depends(get_producer)]
MetricsDep = Annotated[CollectorMetrics, Depends(get_metrics)]
