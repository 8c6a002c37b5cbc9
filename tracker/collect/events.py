"""``POST /v1/events``: check a batch, write it to Kafka, answer once it is acknowledged.

The order of the checks is the contract of docs/ARCHITECTURE.md ("Collector HTTP
contract"): media type, body, batch shape, site and sender, consent, rate limit, bots;
then each event on its own, and delivery.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from tracker.collect.body import check_content_type, read_body
from tracker.collect.deps import CollectorState
from tracker.collect.pipeline import deliver, rate_limit, request_context, too_busy
from tracker.collect.privacy import refuses_tracking, visitor_cookie
from tracker.collect.responses import error_response, json_response
from tracker.collect.validate import ParsedBatch, SplitBatch, parse_batch, split_batch, to_records
from tracker.errors import (
    BatchError,
    BatchTooLargeError,
    BodyReadTimeoutError,
    ConsentRequiredError,
    InvalidBatchError,
    MalformedBatchError,
    OriginNotAllowedError,
    UnauthorizedSenderError,
    UnknownSiteError,
    UnsupportedMediaTypeError,
)
from tracker.http_protocol import received_at

router = APIRouter(tags=["events"])

ENDPOINT = "events"
# (HTTP status, error code) for each way a request can be refused as a whole.
BATCH_ERROR_STATUS: dict[type[BatchError], tuple[int, str]] = {
    MalformedBatchError: (400, "malformed_json"),
    InvalidBatchError: (422, "invalid_batch"),
    BatchTooLargeError: (413, "too_large"),
    UnsupportedMediaTypeError: (415, "unsupported_media_type"),
    BodyReadTimeoutError: (408, "body_timeout"),
    UnknownSiteError: (403, "unknown_site"),
    OriginNotAllowedError: (403, "origin_not_allowed"),
    UnauthorizedSenderError: (401, "unauthorized"),
    ConsentRequiredError: (403, "consent_required"),
}
# nginx's code for "client closed the request": nobody reads it, but metrics show it apart.
CLIENT_CLOSED_REQUEST = 499

_DESCRIPTION = """\
A batch of events for one site, as `application/json` or `text/plain` (what
`navigator.sendBeacon` sends; no CORS preflight). Each event is validated on its own:
valid ones are written to the events topic, invalid ones to the dead-letter topic, and
the answer (202, only after Kafka acknowledged every write) lists the rejected ones.
A 429 or 503 carries `Retry-After`: send the batch again then (events are deduplicated
by `event_id`, so a resend never counts twice). Full contract: docs/ARCHITECTURE.md.
"""

_BATCH_REF = {"$ref": "#/components/schemas/EventBatch"}
_ERROR_REF = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/CollectorError"}}}}


@router.post(
    "/v1/events",
    status_code=202,
    description=_DESCRIPTION,
    # The route reads the raw body itself (size limits, per-event validation): document it here.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _BATCH_REF},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    },
    responses={
        202: {"description": "Acknowledged by Kafka; rejected events listed."},
        400: {"description": "The body is not valid JSON.", **_ERROR_REF},
        401: {"description": "Missing or wrong write key (senders without Origin).", **_ERROR_REF},
        403: {"description": "Unknown site, origin not allowed, or DNT/GPC without consent.", **_ERROR_REF},
        408: {"description": "Body not received in time.", **_ERROR_REF},
        413: {"description": "Body or batch over the size limits: split it.", **_ERROR_REF},
        415: {"description": "Unsupported Content-Type or Content-Encoding.", **_ERROR_REF},
        422: {"description": "JSON, but not a batch.", **_ERROR_REF},
        429: {"description": "Rate limited: retry after `Retry-After` seconds.", **_ERROR_REF},
        503: {"description": "Kafka unavailable or buffer full: retry after `Retry-After`.", **_ERROR_REF},
    },
)
async def post_events(request: Request) -> Response:
    # The state is read directly, not through a FastAPI dependency: this is the hot path.
    state: CollectorState = request.app.state.collector
    started = received_at(request.scope)  # waits for the event loop count too
    status, reason = 500, "exception"  # what an unexpected exception would be counted as
    if not state.slots.try_enter():
        response, reason = too_busy(state)
        state.metrics.count_request(ENDPOINT, 503, reason, time.perf_counter() - started)
        return response
    try:
        response, reason = await _collect(request, state)
        status = response.status_code
        return response
    finally:
        state.slots.leave()
        state.metrics.count_request(ENDPOINT, status, reason, time.perf_counter() - started)


async def _collect(request: Request, state: CollectorState) -> tuple[Response, str]:
    """The answer and the reason code it is counted under."""
    settings, metrics, headers = state.settings, state.metrics, request.headers
    keyed = False
    try:
        check_content_type(headers.get("content-type"), headers.get("content-encoding"))
        body = await read_body(
            request, max_bytes=settings.max_body_bytes, timeout_seconds=settings.body_read_timeout_seconds
        )
        metrics.body_bytes.observe(len(body))
        batch = parse_batch(body, max_events=settings.max_batch_events)
        keyed = state.sites.authorize(
            batch.site_id, origin=headers.get("origin"), authorization=headers.get("authorization")
        )
        if refuses_tracking(headers) and not batch.consent_recorded:
            raise ConsentRequiredError(
                "The browser signals Do Not Track or Global Privacy Control, and the batch carries no "
                'recorded consent ("consent": {"state": "granted", "recorded": true}): nothing was written'
            )
    except BatchError as exc:
        status, code = next(
            (pair for cls, pair in BATCH_ERROR_STATUS.items() if isinstance(exc, cls)), (400, "bad_request")
        )
        return error_response(status, code, exc.message, errors=exc.errors), code
    except ClientDisconnect:
        return Response(status_code=CLIENT_CLOSED_REQUEST), "client_closed"

    metrics.batch_events.observe(len(batch.events))
    # A server sending with its write key relays its visitors' events: its own user agent
    # says nothing about them (nor makes them bots).
    context = request_context(state, request, parse_agent=not keyed)
    limited = rate_limit(state, context, batch.site_id)
    if limited is not None:
        return limited, "rate_limited"
    if context.is_bot and settings.bot_policy == "drop":
        metrics.events.labels(outcome="dropped", reason="bot").inc(len(batch.events))
        return json_response(202, {"accepted": 0, "rejected": [], "dropped": len(batch.events)}), "bot"

    split = split_batch(
        batch.events,
        context,
        max_event_bytes=settings.max_event_bytes,
        dlq_payload_max_bytes=settings.dlq_payload_max_bytes,
        site_id=batch.site_id,
    )
    records = to_records(split, topic_events=settings.topic_events, topic_dlq=settings.topic_events_dlq)
    failed = await deliver(state, records)
    if failed is not None:
        return failed

    metrics.count_events(len(split.events), [r.reason for r in split.rejected])
    response = json_response(
        202, {"accepted": len(split.events), "rejected": [r.public() for r in split.rejected], "dropped": 0}
    )
    cookie_visitor = _cookie_visitor(state, batch, split, refusal=refuses_tracking(headers))
    if cookie_visitor is not None:
        response.headers.append("Set-Cookie", visitor_cookie(settings, cookie_visitor))
    return response, "none"


def _cookie_visitor(
    state: CollectorState, batch: ParsedBatch, split: SplitBatch, *, refusal: bool
) -> str | None:
    """The visitor whose first-party cookie to (re)set, if the batch allows it (see the contract)."""
    if not state.settings.visitor_cookie_enabled or batch.consent is None or batch.consent.state != "granted":
        return None
    if refusal and not batch.consent_recorded:
        return None  # unreachable today (refused earlier); kept so the rule stands on its own
    visitors = {event.visitor_id for event in split.events}
    return visitors.pop() if len(visitors) == 1 else None
