"""CORS for the collector's ``/v1/`` routes, with allowed origins from the site registry.

Starlette's ``CORSMiddleware`` takes one fixed list of origins; ours come from the
sites. This middleware answers preflights for origins some site allows (cached by the
browser for ``cors_max_age_seconds``) and adds the CORS headers to every answer to
such an origin. Whether an origin may send for *the batch's* site is decided by the
route (:meth:`~tracker.collect.sites.SiteRegistry.authorize`), once the body is read.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracker.collect.responses import error_response
from tracker.collect.sites import SiteRegistry

ALLOWED_METHODS = frozenset({"GET", "POST", "HEAD"})
# Content-Type is the only header a browser sender needs (and text/plain needs none).
ALLOWED_HEADERS = frozenset({"content-type"})
# What fetch() may read from an answer besides the safelisted headers.
EXPOSED_HEADERS = "Retry-After"


class SiteCorsMiddleware:
    """Pure ASGI middleware (no request body buffering, no per-request task)."""

    def __init__(self, app: ASGIApp, *, sites: SiteRegistry, max_age: int, path_prefix: str = "/v1/") -> None:
        self.app = app
        self.sites = sites
        self.max_age = str(max_age)
        self.path_prefix = path_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.path_prefix):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if scope["method"] == "OPTIONS" and origin and "access-control-request-method" in headers:
            await self._preflight(origin, headers)(scope, receive, send)
            return
        allowed = self.sites.origin_allowed_anywhere(origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers.add_vary_header("Origin")
                if allowed:
                    assert origin is not None
                    response_headers["Access-Control-Allow-Origin"] = origin
                    response_headers["Access-Control-Allow-Credentials"] = "true"
                    response_headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _preflight(self, origin: str, headers: Headers) -> ASGIApp:
        vary = {"Vary": "Origin"}
        if not self.sites.origin_allowed_anywhere(origin):
            return error_response(
                403,
                "origin_not_allowed",
                f"Origin {origin[:200]!r} is not allowed by any site of this collector",
                headers=vary,
            )
        method = headers["access-control-request-method"].strip().upper()
        requested = {h.strip().lower() for h in headers.get("access-control-request-headers", "").split(",")}
        refused = sorted(requested - ALLOWED_HEADERS - {""})
        if method not in ALLOWED_METHODS or refused:
            what = f"method {method!r}" if method not in ALLOWED_METHODS else f"headers {', '.join(refused)}"
            return error_response(
                403,
                "cors_not_allowed",
                f"Cross-origin {what} not allowed; send POST with Content-Type only",
                headers=vary,
            )
        return Response(
            status_code=204,
            headers={
                **vary,
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": ", ".join(sorted(ALLOWED_METHODS)),
                "Access-Control-Allow-Headers": ", ".join(sorted(ALLOWED_HEADERS)),
                "Access-Control-Max-Age": self.max_age,
            },
        )
