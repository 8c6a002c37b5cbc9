"""``GET /v1/p.gif``: a page view from a page without JavaScript (``<noscript><img ...>``).

Anonymous by design: the page view gets a fresh random visitor id and
``server.anonymous``, and the pixel never sets a cookie. Only a visitor who already
has the server-set visitor cookie (set with consent), and whose browser signals
neither DNT nor GPC, is counted under their own id.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Annotated
from urllib.parse import urlsplit

import pydantic
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from tracker.collect.deps import CollectorState, StateDep
from tracker.collect.pipeline import deliver, rate_limit, request_context, too_busy
from tracker.collect.privacy import read_visitor_cookie, refuses_tracking
from tracker.collect.responses import error_response
from tracker.collect.validate import field_errors
from tracker.errors import BatchError, OriginNotAllowedError, UnknownSiteError
from tracker.http_protocol import received_at
from tracker.kafka_producer import Record
from tracker.schema import TRACKED_ADAPTER, TrackedEvent, parse_event, partition_key

router = APIRouter(tags=["events"])

ENDPOINT = "pixel"
# The smallest transparent 1x1 GIF (43 bytes).
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
PARAMETERS = frozenset({"site", "url", "ref"})
ANONYMOUS_PREFIX = "anon-"
_NO_STORE = {"Cache-Control": "no-store, max-age=0"}

SiteParam = Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="The site id.")]
UrlParam = Annotated[str, Query(min_length=8, max_length=2048, description="The page's URL (http or https).")]
RefParam = Annotated[str | None, Query(max_length=2048, description="The page's referrer, if any.")]


@router.get(
    "/v1/p.gif",
    response_class=Response,
    responses={
        200: {"content": {"image/gif": {}}, "description": "Page view acknowledged by Kafka."},
        403: {"description": "Unknown site, or a Referer from an origin the site does not allow."},
        404: {"description": "The pixel is turned off (TRACKER_PIXEL_ENABLED=false)."},
        422: {"description": "Missing, malformed or unknown query parameter."},
        429: {"description": "Rate limited: retry after `Retry-After` seconds."},
        503: {"description": "Kafka unavailable or buffer full."},
    },
)
async def pixel(
    request: Request, state: StateDep, site: SiteParam, url: UrlParam, ref: RefParam = None
) -> Response:
    """Record one anonymous page view; answers a transparent GIF once Kafka acknowledged it."""
    started = received_at(request.scope)  # waits for the event loop count too
    status, reason = 500, "exception"
    if not state.slots.try_enter():
        response, reason = too_busy(state)
        state.metrics.count_request(ENDPOINT, 503, reason, time.perf_counter() - started)
        return response
    try:
        response, reason = await _record(request, state, site, url, ref)
        status = response.status_code
        return response
    finally:
        state.slots.leave()
        state.metrics.count_request(ENDPOINT, status, reason, time.perf_counter() - started)


async def _record(
    request: Request, state: CollectorState, site: str, url: str, ref: str | None
) -> tuple[Response, str]:
    settings = state.settings
    if not settings.pixel_enabled:
        return error_response(404, "not_found", "The no-JavaScript pixel is turned off here"), "disabled"
    problems = _parameter_problems(request, url, ref)
    if problems:
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return error_response(422, "invalid_request", f"Invalid query: {detail}", errors=problems), "invalid"
    try:
        _authorize(state, site, request.headers.get("referer"))
    except BatchError as exc:
        code = "unknown_site" if isinstance(exc, UnknownSiteError) else "origin_not_allowed"
        return error_response(403, code, exc.message), code

    visitor = None
    if settings.visitor_cookie_enabled and not refuses_tracking(request.headers):
        visitor = read_visitor_cookie(settings, request.cookies)
    context = request_context(state, request, anonymous=visitor is None)
    limited = rate_limit(state, context, site)
    if limited is not None:
        return limited, "rate_limited"
    if context.is_bot and settings.bot_policy == "drop":
        state.metrics.events.labels(outcome="dropped", reason="bot").inc()
        return _gif(), "bot"

    raw = {
        "type": "page_view",
        "event_id": str(uuid.uuid4()),
        "ts": context.received_at,
        "site_id": site,
        "visitor_id": visitor or ANONYMOUS_PREFIX + secrets.token_hex(8),
        "url": url,
        **({"referrer": ref} if ref else {}),
    }
    try:
        event = parse_event(raw)
    except pydantic.ValidationError as exc:
        errors = field_errors(exc, raw)
        return error_response(422, "invalid_request", errors[0]["message"], errors=errors), "invalid"
    tracked = TrackedEvent(event=event, server=context)
    record = Record(
        settings.topic_events, partition_key(site, event.visitor_id), TRACKED_ADAPTER.dump_json(tracked)
    )
    failed = await deliver(state, [record])
    if failed is not None:
        return failed
    state.metrics.count_events(1, [])
    return _gif(), "none"


def _gif() -> Response:
    return Response(PIXEL_GIF, media_type="image/gif", headers=_NO_STORE)


def _parameter_problems(request: Request, url: str, ref: str | None) -> list[dict[str, str]]:
    """Strict parameters: each known one once, nothing else, URLs that are http(s) URLs."""
    problems = []
    names = [name for name, _ in request.query_params.multi_items()]
    for name in sorted(set(names)):
        if name not in PARAMETERS:
            problems.append(
                {
                    "field": name[:64],
                    "message": f"unknown parameter; expected {', '.join(sorted(PARAMETERS))}",
                }
            )
        elif names.count(name) > 1:
            problems.append({"field": name, "message": "given more than once"})
    for name, value in (("url", url), ("ref", ref)):
        if value is not None and not _is_web_url(value):
            problems.append({"field": name, "message": "expected an http:// or https:// URL"})
    return problems


def _is_web_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and value.isprintable()


def _authorize(state: CollectorState, site: str, referer: str | None) -> None:
    """The site must be known; a Referer, when the browser sends one, must be one of its origins."""
    if state.sites.get(site) is None and not state.sites.allow_unregistered:
        raise UnknownSiteError(f"Site {site!r} is not registered with this collector")
    if referer:
        try:
            parts = urlsplit(referer)
        except ValueError:
            parts = urlsplit("")
        origin = f"{parts.scheme}://{parts.netloc}"
        if not state.sites.origin_allowed(site, origin):
            raise OriginNotAllowedError(f"Pages of {origin[:200]!r} may not count views for site {site!r}")
