"""Pure pieces of the offer API: circuit breaker, rate limiter, signed access links,
query parsing of the fast path, how uvicorn is configured, and where request timing starts."""

from __future__ import annotations

import time

import pytest
from prometheus_client import generate_latest
from serve_support import metric_value

from tracker.http_protocol import RECEIVED_AT, CoalescingHttpToolsProtocol
from tracker.serve.access import access_link, sign_access, verify_access
from tracker.serve.app import uvicorn_config
from tracker.serve.breaker import CircuitBreaker
from tracker.serve.metrics import UNMATCHED, HttpMetricsMiddleware, OfferMetrics
from tracker.serve.offers import OfferQuery, parse_offer_query
from tracker.serve.ratelimit import RateLimiter
from tracker.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- circuit breaker -----------------------------------------------------------------


def breaker(clock: Clock, changes: list[str] | None = None) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=3,
        reset_seconds=2.0,
        clock=clock,
        on_change=(changes.append if changes is not None else None),
    )


def test_breaker_opens_after_consecutive_failures_only() -> None:
    clock, changes = Clock(), []
    b = breaker(clock, changes)
    for _ in range(2):
        assert b.allow()
        b.failure()
    b.success()  # a success in between resets the count
    for _ in range(2):
        assert b.allow()
        b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open"
    assert changes == ["open"]
    assert not b.allow()


def test_open_breaker_lets_one_probe_through_after_the_reset_time() -> None:
    clock, changes = Clock(), []
    b = breaker(clock, changes)
    for _ in range(3):
        b.failure()
    clock.now += 1.9
    assert not b.allow()
    clock.now += 0.2
    assert b.allow()  # the probe
    assert b.state == "half_open"
    assert not b.allow() and not b.allow()  # everyone else still skips Redis
    b.success()
    assert b.state == "closed"
    assert b.allow()
    assert changes == ["open", "half_open", "closed"]


def test_failed_probe_reopens_for_a_full_period() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failure()
    clock.now += 2.5
    assert b.allow()
    b.failure()
    assert b.state == "open"
    clock.now += 1.0
    assert not b.allow()
    clock.now += 1.1
    assert b.allow()


def test_lost_probe_is_replaced_after_the_reset_time() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failure()
    clock.now += 2.5
    assert b.allow()  # a probe whose outcome is never reported (cancelled request)
    clock.now += 1.0
    assert not b.allow()
    clock.now += 1.5
    assert b.allow()
    assert b.state == "half_open"


def test_breaker_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0, reset_seconds=1)
    with pytest.raises(ValueError, match="reset_seconds"):
        CircuitBreaker(failure_threshold=1, reset_seconds=0)


# --- rate limiter --------------------------------------------------------------------


def test_rate_limiter_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_second=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    clock.now += 100  # refills up to the burst, not beyond
    assert [limiter.acquire("a") for _ in range(4)][-1] > 0


def test_rate_limiter_memory_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_second=1.0, burst=1, max_clients=10, clock=clock)
    for n in range(100):
        limiter.acquire(f"client-{n}")
    assert len(limiter._buckets) == 10
    # The oldest client was forgotten, so it starts again with a full bucket.
    assert limiter.acquire("client-0") == 0.0
    assert limiter.acquire("client-99") > 0


# --- signed access links -------------------------------------------------------------

KEY = "0123456789abcdef0123456789abcdef"


def test_signed_link_round_trip_and_tampering() -> None:
    sig = sign_access("shop", "visitor-0001", 2_000_000_000, KEY)
    assert verify_access("shop", "visitor-0001", 2_000_000_000, sig, KEY, now=1_999_999_999)
    assert not verify_access("shop", "visitor-0001", 2_000_000_001, sig, KEY, now=1_999_999_999)
    assert not verify_access("shop2", "visitor-0001", 2_000_000_000, sig, KEY, now=1_999_999_999)
    assert not verify_access("shop", "visitor-0001", 2_000_000_000, sig, KEY + "x", now=1_999_999_999)
    assert not verify_access("shop", "visitor-0001", 2_000_000_000, sig[:-1], KEY, now=1_999_999_999)
    assert not verify_access("shop", "visitor-0001", 2_000_000_000, sig, KEY, now=2_000_000_000)
    assert not verify_access("shop", "visitor-0001", 2_000_000_000, sig, "", now=0)


def test_signature_is_base64url_of_hmac_sha256_as_documented() -> None:
    import base64
    import hashlib
    import hmac

    expected = hmac.new(KEY.encode(), b"v1:shop:visitor-0001:1800000000", hashlib.sha256).digest()
    assert sign_access("shop", "visitor-0001", 1_800_000_000, KEY) == (
        base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
    )


def test_access_link_carries_every_parameter() -> None:
    link = access_link("https://offers.shop.example/", "shop", "visitor-0001", 1_800_000_000, KEY)
    assert link.startswith(
        "https://offers.shop.example/v1/me?site=shop&visitor=visitor-0001&expires=1800000000&sig="
    )
    with pytest.raises(ValueError, match="TRACKER_ACCESS_SIGNING_KEY"):
        sign_access("shop", "visitor-0001", 1, "")


# --- fast-path query parsing ---------------------------------------------------------


def test_offer_query_is_parsed_and_validated_like_the_route() -> None:
    assert parse_offer_query(b"site=shop&visitor=visitor-0001&slot=home-hero&utm=x") == (
        OfferQuery("shop", "visitor-0001", "home-hero"),
        [],
    )
    assert parse_offer_query(b"site=shop&site=other&visitor=visitor-0001&slot=home-hero")[0] == (
        OfferQuery("other", "visitor-0001", "home-hero")
    )
    page = b"&page=/c/shoes/running&page_type=category&category=shoes&device=mobile&cart=42.5"
    assert parse_offer_query(b"site=shop&visitor=visitor-0001&slot=home-hero" + page)[0] == OfferQuery(
        "shop", "visitor-0001", "home-hero", "/c/shoes/running", "category", "shoes", "mobile", 42.5
    )
    bad = b"&page=c/shoes&page_type=Home&category=&device=phone&cart=-1"
    params, errors = parse_offer_query(b"site=shop&visitor=visitor-0001&slot=home-hero" + bad)
    assert params is None
    assert [(e["loc"], e["type"]) for e in errors] == [
        (("query", "page"), "string_pattern_mismatch"),
        (("query", "page_type"), "string_pattern_mismatch"),
        (("query", "category"), "string_too_short"),
        (("query", "device"), "literal_error"),
        (("query", "cart"), "greater_than_equal"),
    ]
    _, errors = parse_offer_query(b"site=shop&visitor=visitor-0001&slot=home-hero&cart=nan")
    assert [e["loc"] for e in errors] == [("query", "cart")]
    params, errors = parse_offer_query(b"site=Shop!&slot=home%20hero")
    assert params is None
    assert [(e["loc"], e["type"]) for e in errors] == [
        (("query", "site"), "string_pattern_mismatch"),
        (("query", "visitor"), "missing"),
        (("query", "slot"), "string_pattern_mismatch"),
    ]


# --- how the process runs --------------------------------------------------------------


def test_uvicorn_runs_on_uvloop_and_httptools_without_access_log() -> None:
    config = uvicorn_config(Settings(environment="test", api_port=18_999))
    # httptools, each response in one write (tests/test_http_protocol.py)
    assert (config.loop, config.http, config.access_log) == ("uvloop", CoalescingHttpToolsProtocol, False)
    assert (config.host, config.port) == ("127.0.0.1", 18_999)


def test_forwarded_headers_are_read_only_behind_trusted_proxies() -> None:
    assert uvicorn_config(Settings(environment="test")).proxy_headers is False
    behind = uvicorn_config(Settings(environment="test", trusted_proxies="10.0.0.0/8"))
    assert behind.proxy_headers is True
    assert behind.forwarded_allow_ips == "10.0.0.0/8"


# --- request timing -------------------------------------------------------------------


async def test_request_durations_start_when_the_server_began_reading_the_request() -> None:
    """The offer API times a request from the arrival the protocol noted, not from when its
    middleware first ran: a wait for the event loop counts as the client's wait."""

    async def answer(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    async def nowhere(message: object) -> None:
        return None

    metrics = OfferMetrics()
    middleware = HttpMetricsMiddleware(answer, metrics=metrics)
    scope = {"type": "http", "method": "GET", "path": "/x", RECEIVED_AT: time.perf_counter() - 0.25}
    await middleware(scope, None, nowhere)  # type: ignore[arg-type]
    text = generate_latest(metrics.registry).decode()
    waited = metric_value(text, "tracker_offer_http_request_duration_seconds_sum", handler=UNMATCHED)
    assert 0.25 <= waited < 10
