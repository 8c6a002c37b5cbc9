"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from tracker.serve.deps import CatalogueDep, DecisionLogDep, MetricsDep, RedisDep, SettingsDep

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> Response:
    return Response(orjson.dumps({"status": "ok"}), media_type="application/json")


@router.get("/readyz", summary="Readiness: catalogue loaded; reports whether Redis answers a PING")
async def readyz(
    settings: SettingsDep, redis: RedisDep, catalogue: CatalogueDep, decisions: DecisionLogDep
) -> Response:
    try:
        async with asyncio.timeout(settings.redis_timeout_seconds):
            await redis.ping()
        redis_status = "ok"
    except (RedisError, OSError, TimeoutError) as exc:
        redis_status = f"unavailable: {type(exc).__name__}"
    # Ready even without Redis: the API then serves safe defaults. Failing readiness would make
    # a load balancer drop every replica at once in a Redis outage, and the page get nothing.
    body = {
        "status": "ready" if redis_status == "ok" else "degraded",
        "redis": redis_status,
        "offers": len(catalogue.offers),
        # Informational only: the API serves without Kafka, it just cannot log decisions.
        "decision_log": "connected" if decisions.connected else "connecting",
    }
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
