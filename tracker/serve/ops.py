"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from tracker.serve.deps import CatalogueDep, DecisionLogDep, MetricsDep, StoreDep

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="Liveness: the process is up and its event loop answers")
async def healthz() -> Response:
    return Response(orjson.dumps({"status": "ok"}), media_type="application/json")


@router.get("/readyz", summary="Readiness: catalogue loaded; reports Redis, the breaker and Kafka")
async def readyz(
    request: Request, store: StoreDep, catalogue: CatalogueDep, decisions: DecisionLogDep
) -> Response:
    redis_status = await store.ping()
    # Ready even without Redis or Kafka: the API then serves safe defaults. Failing readiness
    # would make a load balancer drop every replica at once in a Redis outage, and pages get nothing.
    body = {
        "status": "ready" if redis_status == "ok" else "degraded",
        "redis": redis_status,
        "redis_breaker": store.breaker.state,
        "offers": len(catalogue.offers),
        "catalogue_version": request.app.state.catalogue.version,
        # Informational only: the API serves without Kafka, it just cannot log decisions.
        "decision_log": "connected" if decisions.connected else "connecting",
    }
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
