"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from tracker.collect.deps import MetricsDep, ProducerDep, SettingsDep
from tracker.collect.responses import error_response, json_response

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> Response:
    """The process is alive (says nothing about Kafka)."""
    return json_response(200, {"status": "ok"})


@router.get("/readyz")
async def readyz(producer: ProducerDep, settings: SettingsDep) -> Response:
    """200 while Kafka answers the producer; 503 otherwise, so a load balancer routes elsewhere."""
    if await producer.check():
        return json_response(200, {"status": "ready"})
    return error_response(
        503,
        "not_ready",
        f"Kafka at {settings.kafka_bootstrap} is not reachable by the producer",
        headers={"Retry-After": str(settings.retry_after_seconds)},
    )


@router.get("/metrics")
async def metrics(collector_metrics: MetricsDep) -> Response:
    body, content_type = collector_metrics.render()
    return Response(body, media_type=content_type)
