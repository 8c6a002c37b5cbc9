"""What the browser snippet needs from the collector besides ``POST /v1/events``.

- ``GET /s/t.js``: the built snippet (``js-snippet/dist/t.js``, ``TRACKER_SNIPPET_PATH``)
  under a neutral path, so that ad-blocker lists of tracker file names do not match it.
  Sites load it from their own domain (a path their proxy forwards to the collector).
- ``GET /v1/id``: the visitor id in the collector's HttpOnly first-party cookie
  (``TRACKER_VISITOR_COOKIE_*``, set by ``POST /v1/events`` on consented batches). The
  snippet asks for it only when its own copies (script cookie, localStorage) are gone,
  e.g. after Safari expired the script-set cookie at 7 days.
- ``POST /v1/id/forget``: deletes that cookie (scripts cannot: it is HttpOnly); the
  snippet calls it when a visitor who had consented refuses.

CORS for the ``/v1/`` routes is the collector's (:mod:`tracker.collect.cors`): only the
sites' origins may read ``/v1/id``, and ``SameSite=Lax`` keeps other sites' pages from
sending the cookie at all.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import Response

from tracker.collect.deps import SettingsDep
from tracker.collect.privacy import read_visitor_cookie
from tracker.collect.responses import error_response, json_response
from tracker.settings import Settings

router = APIRouter(tags=["snippet"])

SNIPPET_PATH = "/s/t.js"
# The path does not change between releases, so browsers revalidate (ETag) after an hour
# and a new release reaches every visitor within about that; a stale copy may be used
# for a day while the revalidation runs in the background.
SNIPPET_CACHE_CONTROL = "public, max-age=3600, stale-while-revalidate=86400"
_NO_STORE = {"Cache-Control": "no-store", "Vary": "Cookie"}


@dataclass(frozen=True)
class Asset:
    """A file to serve, with its gzip encoding and entity tag computed once."""

    body: bytes
    gzipped: bytes
    etag: str


@lru_cache(maxsize=4)
def _load(path: Path, mtime_ns: int, size: int) -> Asset:
    """The file's content; cached per (path, modification time, size), so a rebuild is served at once."""
    body = path.read_bytes()
    # mtime=0: the same bytes give the same gzip stream (stable across replicas and restarts).
    etag = f'"{hashlib.sha256(body).hexdigest()[:20]}"'
    return Asset(body, gzip.compress(body, compresslevel=9, mtime=0), etag)


def load_asset(path: Path) -> Asset | None:
    """The snippet file, or None when it has not been built."""
    try:
        stat = path.stat()
        return _load(path, stat.st_mtime_ns, stat.st_size)
    except OSError:
        return None


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def _accepts_gzip(accept_encoding: str | None) -> bool:
    for part in (accept_encoding or "").lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


@router.head(SNIPPET_PATH, response_class=Response, include_in_schema=False)
@router.get(
    SNIPPET_PATH,
    response_class=Response,
    summary="The browser snippet (JavaScript)",
    responses={
        200: {"content": {"text/javascript": {}}, "description": "The minified snippet."},
        304: {"description": "Not modified since the copy with this ETag."},
        404: {"description": "The snippet has not been built (npm run build in js-snippet/)."},
    },
)
async def snippet(request: Request, settings: SettingsDep) -> Response:
    asset = load_asset(settings.snippet_path)
    if asset is None:
        return error_response(
            404,
            "snippet_not_built",
            f"The snippet is not built ({settings.snippet_path} is missing): run "
            "'npm ci && npm run build' in js-snippet/ (scripts/bootstrap.sh does it)",
        )
    headers = {
        "Cache-Control": SNIPPET_CACHE_CONTROL,
        "ETag": asset.etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        # Sites that isolate themselves (COEP) may still load it from the collector's origin.
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if _etag_matches(request.headers.get("if-none-match"), asset.etag):
        return Response(status_code=304, headers=headers)
    body = asset.body
    if _accepts_gzip(request.headers.get("accept-encoding")):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        body = b""
    return Response(body, headers=headers, media_type="text/javascript; charset=utf-8")


@router.get(
    "/v1/id",
    summary="The visitor id in the collector's first-party cookie",
    responses={
        200: {"description": '`{"visitor_id": "..."}`, or `{"visitor_id": null}` without a valid cookie.'},
        404: {"description": "The server-set visitor cookie is off (TRACKER_VISITOR_COOKIE_ENABLED)."},
    },
)
async def visitor_id(request: Request, settings: SettingsDep) -> Response:
    if not settings.visitor_cookie_enabled:
        return error_response(
            404,
            "visitor_cookie_disabled",
            "The server-set visitor cookie is off: set TRACKER_VISITOR_COOKIE_ENABLED=true to use it",
            headers=_NO_STORE,
        )
    return json_response(200, {"visitor_id": read_visitor_cookie(settings, request.cookies)}, _NO_STORE)


@router.post(
    "/v1/id/forget",
    status_code=204,
    response_class=Response,
    summary="Delete the collector's visitor cookie (the visitor refused consent)",
)
async def forget_visitor_id(settings: SettingsDep) -> Response:
    # Answered whether or not the cookie is enabled: a site that turned it off can still clear old ones.
    response = Response(status_code=204, headers=_NO_STORE)
    response.headers.append("Set-Cookie", expired_visitor_cookie(settings))
    return response


def expired_visitor_cookie(settings: Settings) -> str:
    """A ``Set-Cookie`` value that deletes the visitor cookie: same name, path and domain, no value.

    >>> from tracker.settings import Settings
    >>> expired_visitor_cookie(Settings(visitor_cookie_domain="shop.example"))
    'trk_vid=; Max-Age=0; Path=/; SameSite=Lax; HttpOnly; Domain=shop.example; Secure'
    """
    parts = [f"{settings.visitor_cookie_name}=", "Max-Age=0", "Path=/", "SameSite=Lax", "HttpOnly"]
    if settings.visitor_cookie_domain:
        parts.append(f"Domain={settings.visitor_cookie_domain}")
    if settings.visitor_cookie_secure:
        parts.append("Secure")
    return "; ".join(parts)
