"""``POST /v1/events``: validate a batch, write it to Kafka, answer once it is acknowledged."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from tracker.collect.body import check_content_type, read_body
from tracker.collect.deps import MetricsDep, ProducerDep, SettingsDep
from tracker.collect.enrich import now_ms, server_context
from tracker.collect.metrics import CollectorMetrics
from tracker.collect.producer import BatchProducer
from tracker.collect.responses import error_response, json_response
from tracker.collect.validate import parse_batch, split_batch, to_records
from tracker.errors import (
    BatchError,
    BatchTooLargeError,
    BodyReadTimeoutError,
    DeliveryError,
    InvalidBatchError,
    MalformedBatchError,
    UnsupportedMediaTypeError,
)
from tracker.settings import Settings

router = APIRouter(tags=["events"])

# (HTTP status, error code) for each way a body can be refused as a whole.
BATCH_ERROR_STATUS: dict[type[BatchError], tuple[int, str]] = {
    MalformedBatchError: (400, "malformed_json"),
    InvalidBatchError: (422, "invalid_batch"),
    BatchTooLargeError: (413, "too_large"),
    UnsupportedMediaTypeError: (415, "unsupported_media_type"),
    BodyReadTimeoutError: (408, "body_timeout"),
}
# nginx's code for "client closed the request": nobody reads it, but metrics show it apart.
CLIENT_CLOSED_REQUEST = 499

_DESCRIPTION = """\
Body: `{"events": [...], "sent_at": <epoch ms, optional>}` as `application/json` or
`text/plain` (what `navigator.sendBeacon` sends). Each event is validated on its own:
valid ones are written to the events topic, invalid ones to the dead-letter topic, and
the answer (202, only after Kafka acknowledged every write) lists the rejected ones.
A 503 with `Retry-After` means the batch was not fully acknowledged: send it again later
(events are deduplicated by `event_id`, so a resend never counts twice).
"""


@router.post(
    "/v1/events",
    status_code=202,
    description=_DESCRIPTION,
    responses={
        400: {"description": "The body is not valid JSON."},
        413: {"description": "Body or batch over the size limits: split it."},
        415: {"description": "Unsupported Content-Type or Content-Encoding."},
        422: {"description": "JSON, but not a batch."},
        503: {"description": "Kafka unavailable: retry after `Retry-After` seconds."},
    },
)
async def post_events(
    request: Request, settings: SettingsDep, producer: ProducerDep, metrics: MetricsDep
) -> Response:
    started = time.perf_counter()
    status = 500  # what an unexpected exception would become
    try:
        response = await _collect(request, settings, producer, metrics)
        status = response.status_code
        return response
    finally:
        metrics.requests.labels(status=str(status)).inc()
        metrics.request_duration.observe(time.perf_counter() - started)


async def _collect(
    request: Request, settings: Settings, producer: BatchProducer, metrics: CollectorMetrics
) -> Response:
    try:
        check_content_type(request.headers.get("content-type"), request.headers.get("content-encoding"))
        body = await read_body(
            request, max_bytes=settings.max_body_bytes, timeout_seconds=settings.body_read_timeout_seconds
        )
        raw_events = parse_batch(body, max_events=settings.max_batch_events)
    except BatchError as exc:
        status, code = next(
            (pair for cls, pair in BATCH_ERROR_STATUS.items() if isinstance(exc, cls)), (400, "bad_request")
        )
        return error_response(status, code, exc.message, errors=exc.errors)
    except ClientDisconnect:
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    context = server_context(
        request.client.host if request.client else None,
        request.headers.get("user-agent"),
        received_at=now_ms(),
    )
    split = split_batch(
        raw_events,
        context,
        max_event_bytes=settings.max_event_bytes,
        dlq_payload_max_bytes=settings.dlq_payload_max_bytes,
    )
    records = to_records(split, topic_events=settings.topic_events, topic_dlq=settings.topic_events_dlq)

    produce_started = time.perf_counter()
    try:
        await producer.send_batch(records)
    except DeliveryError as exc:
        return error_response(
            503,
            "unavailable",
            # Part of the batch may have been written: resending it whole is safe, because
            # everything downstream deduplicates by event_id.
            f"{str(exc).rstrip('.')}. The batch was not fully acknowledged: send it again later.",
            headers={"Retry-After": str(settings.retry_after_seconds)},
        )
    finally:
        metrics.produce_duration.observe(time.perf_counter() - produce_started)

    metrics.count_events(len(split.accepted), [r.reason for r in split.rejected])
    return json_response(
        202, {"accepted": len(split.accepted), "rejected": [r.public() for r in split.rejected]}
    )
