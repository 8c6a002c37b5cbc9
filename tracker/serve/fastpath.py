"""``GET /v1/offers`` in pure ASGI, ahead of FastAPI's routing, dependencies and exception layers.

Measured on the benchmark machine (docs/BENCHMARKS.md), FastAPI's layers cost
more CPU per request than the offer decision itself (Redis round trip and
ranking included). :func:`answer_offers` answers that one path and method with
the same parameter types, the same :func:`~tracker.serve.offers.answer` and
the same 422 body as the FastAPI route in :mod:`tracker.serve.offers`, which
stays the reference implementation and the OpenAPI description
(``tests/test_serve_fastpath.py`` checks that both answer alike).

The app (:class:`tracker.serve.app.OfferAPI`) hands ``GET /v1/offers`` to it
before any of FastAPI's own layers, inside instances of the same metrics and CORS
middlewares as every other route, so offer answers are still timed, counted under
``handler="/v1/offers"`` and get their CORS headers. An exception escaping it is
answered 500 by uvicorn (and counted as one by the metrics middleware), as
Starlette's error middleware would have.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from tracker.serve.offers import NO_STORE, OFFERS_PATH, answer, parse_offer_query
from tracker.serve.responses import validation_error_body


class _RouteLabel:
    """Stands in for the Starlette route in ``scope["route"]``: what the metrics label reads."""

    path = OFFERS_PATH


_ROUTE = _RouteLabel()
_JSON = (b"content-type", b"application/json")
_CACHE = tuple((name.lower().encode(), value.encode()) for name, value in NO_STORE.items())


async def answer_offers(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a ``GET /v1/offers`` request (the app routes only those here)."""
    scope["route"] = _ROUTE
    query, errors = parse_offer_query(scope["query_string"])
    if query is None:
        await _send(send, 422, validation_error_body(errors), ())
        return
    body = await answer(scope["app"].state, query)
    await _send(send, 200, body, _CACHE)


async def _send(send: Send, status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...]) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
