"""The steps every collecting route shares: who the client is, rate limit, acknowledged delivery."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from tracker.collect.deps import CollectorState
from tracker.collect.enrich import client_host, now_ms, server_context
from tracker.collect.responses import error_response
from tracker.errors import BrokerUnavailableError, DeliveryError, DeliveryTimeoutError
from tracker.kafka_producer import Record
from tracker.schema import ServerContext


def request_context(
    state: CollectorState, request: Request, *, parse_agent: bool = True, anonymous: bool = False
) -> ServerContext:
    """The server context of a request: receive time, truncated client network, parsed user agent."""
    peer = request.client.host if request.client else None
    host = client_host(peer, request.headers.get("x-forwarded-for"), state.trusted_proxies)
    return server_context(
        host,
        request.headers.get("user-agent"),
        received_at=now_ms(),
        parse_agent=parse_agent,
        anonymous=anonymous,
    )


def too_busy(state: CollectorState) -> tuple[Response, str]:
    """The 503 for a request beyond ``max_concurrent_requests``."""
    return error_response(
        503,
        "overloaded",
        "The collector is handling too many requests: send the batch again later",
        headers={"Retry-After": str(state.settings.retry_after_seconds)},
    ), "overloaded"


def rate_limit(state: CollectorState, context: ServerContext, site_id: str) -> Response | None:
    """A 429 if this client network has used up its budget for the site, else ``None``."""
    if state.limiter is None:
        return None
    wait = state.limiter.take((context.ip_prefix, site_id))
    if not wait:
        return None
    retry_after = max(1, math.ceil(wait))
    return error_response(
        429,
        "rate_limited",
        f"Too many requests from this network for site {site_id!r}; retry in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


async def deliver(state: CollectorState, records: Sequence[Record]) -> tuple[Response, str] | None:
    """Write ``records`` and wait for Kafka's acknowledgement: ``None`` once acknowledged,
    else a 503 and its error code (``overloaded`` or ``unavailable``).

    The in-flight buffer bounds what waits for acknowledgements: past it, 503 at once.
    """
    settings, metrics = state.settings, state.metrics
    retry_after = {"Retry-After": str(settings.retry_after_seconds)}
    nbytes = sum(len(r.value) + len(r.key or b"") for r in records)
    if not state.inflight.try_acquire(nbytes, len(records)):
        message = "The collector has too much waiting for Kafka's acknowledgement: send the batch again later"
        return error_response(503, "overloaded", message, headers=retry_after), "overloaded"
    started = time.perf_counter()
    try:
        await state.producer.send_batch(records)
    except DeliveryError as exc:
        kind = (
            "unavailable"
            if isinstance(exc, BrokerUnavailableError)
            else "timeout"
            if isinstance(exc, DeliveryTimeoutError)
            else "refused"
        )
        metrics.kafka_errors.labels(kind=kind).inc()
        return error_response(
            503,
            "unavailable",
            # Part of the batch may have been written: resending it whole is safe, because
            # everything downstream deduplicates by event_id.
            f"{str(exc).rstrip('.')}. The batch was not fully acknowledged: send it again later.",
            headers=retry_after,
        ), "unavailable"
    finally:
        state.inflight.release(nbytes, len(records))
        metrics.produce_duration.observe(time.perf_counter() - started)
    return None
