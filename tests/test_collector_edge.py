"""The collector at the edge, against the session's real Kafka: sites, origins and CORS,
write keys, DNT/GPC, rate limits, bots, trusted proxies, the visitor cookie, the pixel.

Every refusal is checked twice: the answer the sender gets, and that nothing reached
Kafka (the tails read what was appended while the test ran, for its own site only).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from collector_support import Tails, open_tails, page_view, running

from tracker.collect.app import create_app
from tracker.collect.pixel import PIXEL_GIF
from tracker.settings import Settings, SiteConfig

pytestmark = pytest.mark.integration

SHOP = "https://shop.example"
WRITE_KEY = "k3y-" + "x" * 28
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
BEACON = {"content-type": "text/plain;charset=UTF-8"}


@pytest.fixture
def keyed_site(site_id: str) -> str:
    return f"{site_id}-api"


@pytest.fixture
def edge_settings(settings: Settings, site_id: str, keyed_site: str) -> Settings:
    return settings.model_copy(
        update={
            "sites": (
                SiteConfig(id=site_id, origins=(SHOP, "https://*.shop.example")),
                SiteConfig(id=keyed_site, origins=("https://partner.example",), write_key=WRITE_KEY),
            ),
            "rate_limit_per_second": 0.0,
        }
    )


@pytest.fixture
async def tails(settings: Settings) -> AsyncIterator[Tails]:
    async with open_tails(settings) as opened:
        yield opened


@pytest.fixture
async def http(edge_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(edge_settings)) as client:
        yield client


def batch(site_id: str, *events: dict, **envelope: object) -> bytes:
    return orjson.dumps({"site_id": site_id, **envelope, "events": list(events) or [page_view(site_id)]})


async def written_ids(tails: Tails, site_id: str) -> list[str]:
    return [str(t.event.event_id) for _, t, _ in await tails.events(site_id)]


# --- CORS and origins ---------------------------------------------------------------------


@pytest.mark.parametrize("origin", [SHOP, "https://www.shop.example", "https://a.b.shop.example"])
async def test_preflight_from_an_allowed_origin_is_answered_and_cacheable(
    http: httpx.AsyncClient, origin: str, edge_settings: Settings
) -> None:
    response = await http.options(
        "/v1/events",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type"
    assert response.headers["access-control-max-age"] == str(edge_settings.cors_max_age_seconds)
    assert response.headers["vary"] == "Origin"


@pytest.mark.parametrize(
    ("origin", "request_headers", "code"),
    [
        ("https://evil.example", "content-type", "origin_not_allowed"),
        ("https://shop.example.evil.example", "content-type", "origin_not_allowed"),
        ("null", "content-type", "origin_not_allowed"),
        (SHOP, "content-type, x-secret", "cors_not_allowed"),
    ],
)
async def test_preflight_is_refused_for_other_origins_and_headers(
    http: httpx.AsyncClient, origin: str, request_headers: str, code: str
) -> None:
    response = await http.options(
        "/v1/events",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": request_headers,
        },
    )
    assert response.status_code == 403
    assert response.json()["error"] == code
    assert "access-control-allow-origin" not in response.headers


async def test_beacon_and_keepalive_fetch_from_an_allowed_origin_are_written(
    http: httpx.AsyncClient, tails: Tails, site_id: str
) -> None:
    beacon, fetched = page_view(site_id), page_view(site_id)
    # sendBeacon: text/plain, no preflight; fetch(keepalive): JSON after a preflight.
    first = await http.post("/v1/events", content=batch(site_id, beacon), headers={**BEACON, "origin": SHOP})
    second = await http.post(
        "/v1/events",
        content=batch(site_id, fetched),
        headers={"content-type": "application/json", "origin": "https://www.shop.example"},
    )
    for response, origin in ((first, SHOP), (second, "https://www.shop.example")):
        assert response.status_code == 202, response.text
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["access-control-allow-credentials"] == "true"
        assert response.headers["access-control-expose-headers"] == "Retry-After"
    assert sorted(await written_ids(tails, site_id)) == sorted([beacon["event_id"], fetched["event_id"]])


async def test_disallowed_origin_is_403_and_writes_nothing(
    http: httpx.AsyncClient, tails: Tails, site_id: str, keyed_site: str
) -> None:
    # An origin allowed for another site of this collector is no better than a stranger.
    for origin in ("https://evil.example", "https://partner.example"):
        response = await http.post("/v1/events", content=batch(site_id), headers={**BEACON, "origin": origin})
        assert response.status_code == 403
        assert response.json()["error"] == "origin_not_allowed"
        assert origin in response.json()["message"] and site_id in response.json()["message"]
    assert await written_ids(tails, site_id) == []
    assert await tails.dead_letters(site_id) == []


async def test_unknown_site_is_403_and_writes_nothing(http: httpx.AsyncClient, tails: Tails) -> None:
    stranger = "nobody-registered-this"
    for headers in (BEACON, {**BEACON, "origin": SHOP}):
        response = await http.post("/v1/events", content=batch(stranger), headers=headers)
        assert response.status_code == 403
        assert response.json()["error"] == "unknown_site"
        assert "not registered" in response.json()["message"]
    assert await written_ids(tails, stranger) == []


async def test_events_for_another_site_are_dead_lettered_as_site_mismatch(
    http: httpx.AsyncClient, tails: Tails, site_id: str, keyed_site: str
) -> None:
    mine, smuggled = page_view(site_id), page_view(keyed_site)
    response = await http.post(
        "/v1/events", content=batch(site_id, mine, smuggled), headers={**BEACON, "origin": SHOP}
    )
    assert response.status_code == 202
    assert [(r["index"], r["reason"]) for r in response.json()["rejected"]] == [(1, "site_mismatch")]
    assert await written_ids(tails, site_id) == [mine["event_id"]]
    assert await written_ids(tails, keyed_site) == []
    (dead, _), *_ = await tails.dead_letters(keyed_site)
    assert dead.reason == "site_mismatch"


# --- write keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "needs its write key"),
        ({"authorization": "Bearer wrong-key-wrong-key"}, "not site"),
        ({"authorization": f"Basic {WRITE_KEY}"}, "not site"),
        ({"authorization": "Bearer wrong-key", "origin": "https://partner.example"}, "not site"),
    ],
)
async def test_write_key_is_required_from_senders_without_origin(
    http: httpx.AsyncClient, tails: Tails, keyed_site: str, headers: dict[str, str], message: str
) -> None:
    response = await http.post("/v1/events", content=batch(keyed_site), headers={**BEACON, **headers})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert message in response.json()["message"]
    assert await written_ids(tails, keyed_site) == []


async def test_server_with_write_key_and_browser_from_origin_are_accepted(
    http: httpx.AsyncClient, tails: Tails, keyed_site: str
) -> None:
    relayed, browsed = page_view(keyed_site), page_view(keyed_site)
    server = await http.post(
        "/v1/events",
        content=batch(keyed_site, relayed),
        headers={**BEACON, "authorization": f"Bearer {WRITE_KEY}", "user-agent": "curl/8.5.0"},
    )
    browser = await http.post(
        "/v1/events",
        content=batch(keyed_site, browsed),
        headers={**BEACON, "origin": "https://partner.example", "user-agent": FIREFOX},
    )
    assert (server.status_code, browser.status_code) == (202, 202)
    written = {str(t.event.event_id): t.server for _, t, _ in await tails.events(keyed_site)}
    # The relaying server's own user agent says nothing about its visitors: not parsed.
    assert (written[relayed["event_id"]].browser, written[relayed["event_id"]].is_bot) == (None, False)
    assert (written[browsed["event_id"]].browser, written[browsed["event_id"]].device) == (
        "Firefox",
        "desktop",
    )


# --- DNT and GPC --------------------------------------------------------------------------


@pytest.mark.parametrize("signal", [{"dnt": "1"}, {"sec-gpc": "1"}])
@pytest.mark.parametrize(
    "consent", [None, {"state": "granted"}, {"state": "granted", "recorded": False}, {"state": "denied"}]
)
async def test_dnt_and_gpc_refuse_unless_consent_is_recorded(
    http: httpx.AsyncClient, tails: Tails, site_id: str, signal: dict[str, str], consent: dict | None
) -> None:
    envelope = {"consent": consent} if consent else {}
    response = await http.post(
        "/v1/events", content=batch(site_id, **envelope), headers={**BEACON, "origin": SHOP, **signal}
    )
    assert response.status_code == 403
    assert response.json()["error"] == "consent_required"
    assert "recorded" in response.json()["message"]
    assert await written_ids(tails, site_id) == []


async def test_recorded_consent_overrides_dnt_and_gpc(
    http: httpx.AsyncClient, tails: Tails, site_id: str
) -> None:
    event = page_view(site_id)
    response = await http.post(
        "/v1/events",
        content=batch(site_id, event, consent={"state": "granted", "recorded": True}),
        headers={**BEACON, "origin": SHOP, "dnt": "1", "sec-gpc": "1"},
    )
    assert response.status_code == 202, response.text
    assert await written_ids(tails, site_id) == [event["event_id"]]


async def test_dnt_0_is_no_refusal(http: httpx.AsyncClient, tails: Tails, site_id: str) -> None:
    response = await http.post(
        "/v1/events", content=batch(site_id), headers={**BEACON, "origin": SHOP, "dnt": "0"}
    )
    assert response.status_code == 202


# --- rate limits --------------------------------------------------------------------------


async def test_rate_limit_per_client_network_and_site_is_429_with_retry_after(
    edge_settings: Settings, tails: Tails, site_id: str, keyed_site: str
) -> None:
    limited = edge_settings.model_copy(update={"rate_limit_per_second": 0.2, "rate_limit_burst": 2})
    app = create_app(limited)
    headers = {**BEACON, "origin": SHOP}
    async with (
        running(app, client=("198.51.100.10", 5000)) as first,
        running(app, client=("198.51.100.99", 5001)) as same_network,
        running(app, client=("192.0.2.1", 5002)) as elsewhere,
    ):
        started = time.monotonic()
        statuses = [(await first.post("/v1/events", content=batch(site_id), headers=headers)).status_code]
        statuses.append(
            (await same_network.post("/v1/events", content=batch(site_id), headers=headers)).status_code
        )
        refused = await first.post("/v1/events", content=batch(site_id), headers=headers)
        elapsed = time.monotonic() - started
        other_network = await elsewhere.post("/v1/events", content=batch(site_id), headers=headers)
        other_site = await first.post(
            "/v1/events",
            content=batch(keyed_site),
            headers={**BEACON, "origin": "https://partner.example"},
        )
        metrics = (await first.get("/metrics")).text
    assert statuses == [202, 202]  # the burst, shared by the /24
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    # 1 token at 0.2 per second: 5 s, less what refilled since the burst began (a slow machine
    # can take over a second for the three requests; the exact arithmetic is in test_collector_sites).
    assert max(1, math.ceil(5 - elapsed)) <= int(refused.headers["retry-after"]) <= 5
    assert refused.headers["access-control-allow-origin"] == SHOP  # readable by fetch()
    assert (other_network.status_code, other_site.status_code) == (202, 202)
    assert len(await written_ids(tails, site_id)) == 3
    assert 'reason="rate_limited",status="429"' in metrics


# --- bots ---------------------------------------------------------------------------------


async def test_bots_are_flagged_by_default(http: httpx.AsyncClient, tails: Tails, site_id: str) -> None:
    event = page_view(site_id)
    response = await http.post(
        "/v1/events",
        content=batch(site_id, event),
        headers={**BEACON, "origin": SHOP, "user-agent": GOOGLEBOT},
    )
    assert response.status_code == 202
    ((_, tracked, raw),) = await tails.events(site_id)
    assert (tracked.server.is_bot, tracked.server.device) == (True, "bot")
    assert b"Googlebot/2.1" not in raw  # the raw user agent is never written


async def test_bots_are_dropped_when_configured(edge_settings: Settings, tails: Tails, site_id: str) -> None:
    app = create_app(edge_settings.model_copy(update={"bot_policy": "drop"}))
    async with running(app) as client:
        bot = await client.post(
            "/v1/events",
            content=batch(site_id, page_view(site_id), page_view(site_id)),
            headers={**BEACON, "origin": SHOP, "user-agent": GOOGLEBOT},
        )
        person = await client.post(
            "/v1/events", content=batch(site_id), headers={**BEACON, "origin": SHOP, "user-agent": FIREFOX}
        )
        metrics = (await client.get("/metrics")).text
    assert bot.status_code == 202
    assert bot.json() == {"accepted": 0, "rejected": [], "dropped": 2}
    assert person.status_code == 202 and person.json()["accepted"] == 1
    assert len(await written_ids(tails, site_id)) == 1
    assert 'tracker_collector_events_total{outcome="dropped",reason="bot"} 2.0' in metrics


# --- client address -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trusted", "prefix"),
    [(("203.0.113.0/24",), "198.51.100.0/24"), ((), "203.0.113.0/24")],
)
async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    edge_settings: Settings, tails: Tails, site_id: str, trusted: tuple[str, ...], prefix: str
) -> None:
    app = create_app(edge_settings.model_copy(update={"trusted_proxies": trusted}))
    async with running(app) as client:  # the TCP peer is 203.0.113.77
        response = await client.post(
            "/v1/events",
            content=batch(site_id),
            headers={**BEACON, "origin": SHOP, "x-forwarded-for": "6.6.6.6, 198.51.100.23"},
        )
    assert response.status_code == 202
    ((_, tracked, raw),) = await tails.events(site_id)
    assert tracked.server.ip_prefix == prefix
    for address in (b"198.51.100.23", b"6.6.6.6", b"203.0.113.77"):
        assert address not in raw


# --- server-set visitor cookie -------------------------------------------------------------


@pytest.mark.parametrize(
    ("enabled", "consent", "visitors", "expected"),
    [
        (True, {"state": "granted"}, ["visitor-cookie1"], True),
        (True, {"state": "granted", "recorded": True}, ["visitor-cookie1"], True),
        (True, {"state": "pending"}, ["visitor-cookie1"], False),
        (True, None, ["visitor-cookie1"], False),
        (True, {"state": "granted"}, ["visitor-cookie1", "visitor-cookie2"], False),
        (False, {"state": "granted"}, ["visitor-cookie1"], False),
    ],
)
async def test_visitor_cookie_is_set_only_when_enabled_with_consent_for_one_visitor(
    edge_settings: Settings,
    site_id: str,
    enabled: bool,
    consent: dict | None,
    visitors: list[str],
    expected: bool,
) -> None:
    app = create_app(edge_settings.model_copy(update={"visitor_cookie_enabled": enabled}))
    envelope = {"consent": consent} if consent else {}
    events = [page_view(site_id, visitor_id=v) for v in visitors]
    async with running(app) as client:
        response = await client.post(
            "/v1/events", content=batch(site_id, *events, **envelope), headers={**BEACON, "origin": SHOP}
        )
    assert response.status_code == 202
    cookie = response.headers.get("set-cookie")
    if not expected:
        assert cookie is None
        return
    assert cookie is not None
    attributes = [part.strip() for part in cookie.split(";")]
    assert attributes[0] == "trk_vid=visitor-cookie1"
    assert {"HttpOnly", "Secure", "SameSite=Lax", "Path=/"} <= set(attributes)
    assert f"Max-Age={edge_settings.visitor_cookie_max_age_seconds}" in attributes


# --- the no-JavaScript pixel -----------------------------------------------------------------


async def test_pixel_records_an_anonymous_page_view(
    http: httpx.AsyncClient, tails: Tails, site_id: str
) -> None:
    url = "https://shop.example/shoes?id=7"
    response = await http.get(
        "/v1/p.gif",
        params={"site": site_id, "url": url, "ref": "https://search.example/"},
        headers={"referer": url, "user-agent": FIREFOX},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == PIXEL_GIF and len(PIXEL_GIF) == 43
    assert "no-store" in response.headers["cache-control"]
    assert "set-cookie" not in response.headers
    ((_, tracked, raw),) = await tails.events(site_id)
    assert tracked.event.type == "page_view"
    assert str(tracked.event.url) == url and tracked.event.referrer == "https://search.example/"
    assert tracked.server.anonymous and tracked.event.visitor_id.startswith("anon-")
    assert tracked.server.ip_prefix == "203.0.113.0/24" and b"203.0.113.77" not in raw
    assert tracked.server.browser == "Firefox"


async def test_pixel_uses_the_visitor_cookie_unless_dnt(
    edge_settings: Settings, tails: Tails, site_id: str
) -> None:
    app = create_app(edge_settings.model_copy(update={"visitor_cookie_enabled": True}))
    query = {"site": site_id, "url": "https://shop.example/"}
    async with running(app) as client:
        known = await client.get("/v1/p.gif", params=query, headers={"cookie": "trk_vid=visitor-known1"})
        private = await client.get(
            "/v1/p.gif", params=query, headers={"cookie": "trk_vid=visitor-known1", "sec-gpc": "1"}
        )
    assert (known.status_code, private.status_code) == (200, 200)
    assert "set-cookie" not in known.headers and "set-cookie" not in private.headers
    visitors = sorted((t.event.visitor_id, t.server.anonymous) for _, t, _ in await tails.events(site_id))
    assert visitors[1] == ("visitor-known1", False)
    assert visitors[0][0].startswith("anon-") and visitors[0][1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"url": "https://shop.example/"}, "site"),
        ({"site": "{site}"}, "url"),
        ({"site": "{site}", "url": "https://shop.example/", "uid": "tracking-me"}, "uid"),
        ({"site": "{site}", "url": "javascript:alert(1)"}, "url"),
        ({"site": "{site}", "url": "https://shop.example/", "ref": "ftp://files.example/"}, "ref"),
        ({"site": "Bad Site", "url": "https://shop.example/"}, "site"),
        ({"site": "{site}", "url": "https://shop.example/" + "p" * 2100}, "url"),
    ],
)
async def test_pixel_parameters_are_strict(
    http: httpx.AsyncClient, tails: Tails, site_id: str, query: dict[str, str], field: str
) -> None:
    params = {name: value.format(site=site_id) for name, value in query.items()}
    response = await http.get("/v1/p.gif", params=params)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await written_ids(tails, site_id) == []


async def test_pixel_refuses_unknown_sites_and_foreign_referers(
    http: httpx.AsyncClient, tails: Tails, site_id: str
) -> None:
    url = "https://shop.example/"
    unknown = await http.get("/v1/p.gif", params={"site": "nobody-registered-this", "url": url})
    foreign = await http.get(
        "/v1/p.gif", params={"site": site_id, "url": url}, headers={"referer": "https://evil.example/page"}
    )
    assert (unknown.status_code, unknown.json()["error"]) == (403, "unknown_site")
    assert (foreign.status_code, foreign.json()["error"]) == (403, "origin_not_allowed")
    assert await written_ids(tails, site_id) == []


async def test_pixel_can_be_turned_off(edge_settings: Settings, site_id: str) -> None:
    app = create_app(edge_settings.model_copy(update={"pixel_enabled": False}))
    async with running(app) as client:
        response = await client.get("/v1/p.gif", params={"site": site_id, "url": "https://shop.example/"})
    assert response.status_code == 404
