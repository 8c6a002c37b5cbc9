"""What the collector serves the snippet (``tracker/collect/snippet.py``), and the CORS the
snippet needs from the offer API. In-process; nothing here talks to Kafka or Redis."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tracker.collect.app import create_app as create_collector
from tracker.serve.app import create_app as create_offer_api
from tracker.settings import Settings, SiteConfig

ORIGIN = "https://www.shop.example"
SNIPPET = b"(()=>{window.tracker=1})();\n" * 50


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    snippet = tmp_path / "t.js"
    snippet.write_bytes(SNIPPET)
    return Settings(
        environment="test",
        snippet_path=snippet,
        sites=(SiteConfig(id="shop", origins=(ORIGIN,)),),
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
async def collector(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = _settings(tmp_path, visitor_cookie_enabled=True, visitor_cookie_domain="shop.example")
    transport = httpx.ASGITransport(app=create_collector(settings))
    async with httpx.AsyncClient(transport=transport, base_url="https://c.shop.example") as http:
        yield http


async def test_snippet_is_javascript_with_revalidation(collector: httpx.AsyncClient) -> None:
    response = await collector.get("/s/t.js", headers={"accept-encoding": "identity"})
    assert response.status_code == 200
    assert response.content == SNIPPET
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=3600, stale-while-revalidate=86400"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-encoding" not in response.headers
    etag = response.headers["etag"]

    again = await collector.get("/s/t.js", headers={"if-none-match": f'W/{etag}, "other"'})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag


async def test_snippet_is_gzipped_for_clients_that_accept_it(collector: httpx.AsyncClient) -> None:
    response = await collector.get("/s/t.js", headers={"accept-encoding": "br, gzip;q=0.8"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.content == SNIPPET  # httpx decodes it
    raw = await collector.get("/s/t.js", headers={"accept-encoding": "gzip;q=0"})
    assert "content-encoding" not in raw.headers
    head = await collector.head("/s/t.js", headers={"accept-encoding": "gzip"})
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(gzip.compress(SNIPPET, compresslevel=9, mtime=0))


async def test_a_rebuilt_snippet_is_served_at_once(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    app = create_collector(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as http:
        first = await http.get("/s/t.js")
        settings.snippet_path.write_bytes(b"/* v2 */")
        second = await http.get("/s/t.js")
    assert second.content == b"/* v2 */"
    assert second.headers["etag"] != first.headers["etag"]


async def test_missing_snippet_says_how_to_build_it(tmp_path: Path) -> None:
    app = create_collector(Settings(environment="test", snippet_path=tmp_path / "absent.js"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as http:
        response = await http.get("/s/t.js")
    assert response.status_code == 404
    assert response.json()["error"] == "snippet_not_built"
    assert "npm run build" in response.json()["message"]


async def test_visitor_id_is_read_back_from_the_collectors_cookie(collector: httpx.AsyncClient) -> None:
    answer = await collector.get("/v1/id", headers={"origin": ORIGIN, "cookie": "trk_vid=visitor-abc-123"})
    assert answer.status_code == 200
    assert answer.json() == {"visitor_id": "visitor-abc-123"}
    assert answer.headers["cache-control"] == "no-store"
    # Only the site's pages may read it, with credentials.
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert answer.headers["access-control-allow-credentials"] == "true"

    for cookie in ("", "trk_vid=someone@example.com", "other=visitor-abc-123"):
        answer = await collector.get("/v1/id", headers={"origin": ORIGIN, "cookie": cookie})
        assert answer.json() == {"visitor_id": None}
    evil = {"origin": "https://evil.example", "cookie": "trk_vid=visitor-abc-123"}
    elsewhere = await collector.get("/v1/id", headers=evil)
    assert "access-control-allow-origin" not in elsewhere.headers


async def test_visitor_id_is_404_while_the_cookie_is_off(tmp_path: Path) -> None:
    app = create_collector(_settings(tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as http:
        answer = await http.get("/v1/id", headers={"cookie": "trk_vid=visitor-abc-123"})
    assert answer.status_code == 404
    assert "TRACKER_VISITOR_COOKIE_ENABLED" in answer.json()["message"]


async def test_forget_deletes_the_collectors_cookie(collector: httpx.AsyncClient) -> None:
    headers = {"origin": ORIGIN, "cookie": "trk_vid=visitor-abc-123"}
    answer = await collector.post("/v1/id/forget", headers=headers)
    assert answer.status_code == 204
    assert answer.headers["set-cookie"] == (
        "trk_vid=; Max-Age=0; Path=/; SameSite=Lax; HttpOnly; Domain=shop.example; Secure"
    )


async def test_offer_api_lets_the_sites_pages_read_offers_only(tmp_path: Path) -> None:
    app = create_offer_api(_settings(tmp_path))
    preflight = {"origin": ORIGIN, "access-control-request-method": "GET"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://o") as http:
        offers = await http.get("/v1/offers", headers={"origin": ORIGIN})  # 422: no parameters
        other = await http.get("/v1/offers", headers={"origin": "https://evil.example"})
        private = await http.options("/v1/me", headers=preflight)
    assert offers.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in private.headers
