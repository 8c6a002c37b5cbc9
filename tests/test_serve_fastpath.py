"""``GET /v1/offers`` answered by the pure-ASGI fast path must be indistinguishable from the
FastAPI route it shortcuts; every endpoint is timed and counted by route template."""

from __future__ import annotations

from typing import Any

import pytest
from serve_support import metric_value, offer_params, running, small_catalogue, store_profile, visitor

from tracker.serve import create_app
from tracker.settings import Settings, SiteConfig

pytestmark = pytest.mark.integration


async def answers(settings: Settings, requests: list[dict[str, str]], *, fast_path: bool) -> list[tuple]:
    out = []
    async with running(create_app(settings, catalogue=small_catalogue(), fast_path=fast_path)) as client:
        for params in requests:
            response = await client.get("/v1/offers", params=params)
            body = response.json()
            body.pop("decision_id", None)
            headers = {k: response.headers.get(k) for k in ("content-type", "cache-control")}
            out.append((response.status_code, headers, body))
    return out


async def test_fast_path_answers_exactly_like_the_route(settings: Settings, site_id: str) -> None:
    fan, stranger = visitor(site_id), visitor(site_id)
    await store_profile(settings, site_id, fan, {"shoes": 3})
    requests = [
        offer_params(site_id, fan),
        offer_params(site_id, stranger),
        offer_params(site_id, fan, "no-such-slot"),
        {"site": site_id, "visitor": fan},
        {"site": "Bad Site", "visitor": "x", "slot": "home-hero"},
        {"site": site_id, "visitor": "someone@example.com", "slot": "home-hero"},
        {**offer_params(site_id, fan), "extra": "ignored"},
    ]
    fast = await answers(settings, requests, fast_path=True)
    reference = await answers(settings, requests, fast_path=False)
    assert fast == reference
    assert [status for status, _, _ in fast] == [200, 200, 200, 422, 422, 422, 200]
    assert fast[0][2]["reason"] == "interest:shoes"


async def test_offers_are_answered_before_fastapis_own_layers(settings: Settings, site_id: str) -> None:
    """GET /v1/offers never enters FastAPI's middleware stack (every other request does)."""
    entered: list[str] = []

    class Spy:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                entered.append(f"{scope['method']} {scope['path']}")
            await self.app(scope, receive, send)

    app = create_app(settings, catalogue=small_catalogue())
    app.add_middleware(Spy)
    async with running(app) as client:
        offer = await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id)))
        assert offer.status_code == 200
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.post("/v1/offers")).status_code == 405
    assert entered == ["GET /healthz", "POST /v1/offers"]


async def test_every_endpoint_is_timed_and_counted_by_route(settings: Settings, site_id: str) -> None:
    async with running(create_app(settings, catalogue=small_catalogue())) as client:
        await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id)))
        await client.get("/v1/offers", params={"site": site_id})
        await client.get("/healthz")
        await client.get(f"/no/such/path/{visitor(site_id)}")
        await client.post("/v1/offers")
        text = (await client.get("/metrics")).text

    def requests(handler: str, method: str, status: str) -> float:
        return metric_value(
            text, "tracker_offer_http_requests_total", handler=handler, method=method, status=status
        )

    assert requests("/v1/offers", "GET", "200") == 1
    assert requests("/v1/offers", "GET", "422") == 1
    assert requests("/healthz", "GET", "200") == 1
    assert requests("unmatched", "GET", "404") == 1  # the unknown path is not a label value
    assert requests("/v1/offers", "POST", "405") == 1
    assert metric_value(text, "tracker_offer_http_request_duration_seconds_count", handler="/v1/offers") == 3
    assert "no/such/path" not in text


async def test_offers_carry_cors_headers_for_registered_sites_only(settings: Settings, site_id: str) -> None:
    with_site = settings.model_copy(
        update={"sites": (SiteConfig(id=site_id, origins=("https://shop.example",)),)}
    )
    async with running(create_app(with_site, catalogue=small_catalogue())) as client:
        allowed = await client.get(
            "/v1/offers", params=offer_params(site_id, visitor()), headers={"Origin": "https://shop.example"}
        )
        foreign = await client.get(
            "/v1/offers", params=offer_params(site_id, visitor()), headers={"Origin": "https://evil.example"}
        )
        me = await client.get("/v1/me", params={"site": site_id}, headers={"Origin": "https://shop.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert "access-control-allow-origin" not in foreign.headers
    assert "access-control-allow-origin" not in me.headers  # privacy endpoints are never cross-origin
