"""Admin API of the offer catalogue: list, read, create, update, disable and enable offers.

Every route needs ``Authorization: Bearer <TRACKER_ADMIN_TOKEN>`` (401 otherwise) and is
rate-limited per client address like the other admin endpoints (429). Bodies are offers as
written in the catalogue file (docs/DECISIONS.md, "How to add an offer"), as JSON.

With ``TRACKER_CATALOGUE_SOURCE=redis`` (the default) a change is a compare-and-set on the
catalogue pointer in Redis (:mod:`tracker.serve.catalogue_store`): this replica serves it when
the answer is sent, every other replica within ``TRACKER_CATALOGUE_REFRESH_SECONDS``. Reads go
to Redis too, so that a client behind a load balancer reads its own writes whichever replica
answers. Answers carry the catalogue ``version`` (also as ``ETag``); a write may send
``If-Match: "<version>"`` to be refused with 412 if the catalogue changed since it was read
(without it, a change is applied again to the newer catalogue). Errors: 404 unknown offer, 409
an id already used (create) or a file-managed catalogue, 412 stale ``If-Match``, 413 body over
64 KiB, 422 an invalid offer, or a change that would make the catalogue invalid (the message
names the offer and the field), 503 Redis unavailable (``Retry-After``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi import Path as PathParam
from redis.exceptions import RedisError

from tracker.errors import CatalogueError
from tracker.models.catalogue import Catalogue, Offer, parse_offer
from tracker.serve.catalogue_store import (
    CatalogueConflict,
    CatalogueSnapshotError,
    CatalogueStore,
    PreconditionFailed,
    StoredCatalogue,
)
from tracker.serve.deps import privacy_rate_limit, require_admin
from tracker.serve.snapshots import VersionedCache

log = logging.getLogger(__name__)

PREFIX = "/v1/admin/offers"
MAX_BODY_BYTES = 65_536
_NO_STORE = {"Cache-Control": "no-store"}

router = APIRouter(
    prefix=PREFIX, tags=["admin: offers"], dependencies=[Depends(privacy_rate_limit), Depends(require_admin)]
)

OfferIdParam = Annotated[str, PathParam(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="Offer id.")]


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline_refs(value, defs) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(item, defs) for item in schema]
    return schema


def _offer_schema() -> dict[str, Any]:
    schema = Offer.model_json_schema()
    return _inline_refs(schema, schema.get("$defs", {}))


_OFFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _offer_schema()}},
    }
}
_IF_MATCH_DOC = {
    "parameters": [
        {
            "name": "If-Match",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": 'The catalogue version the change is based on ("<version>"); 412 if '
            "it is no longer current.",
        }
    ]
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong admin token"},
    429: {"description": "Too many admin requests from this address (Retry-After)"},
    503: {"description": "Redis is unavailable; retry after Retry-After"},
}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    404: {"description": "No offer with this id"},
    409: {"description": "Id already used (create), or the catalogue is managed in its file"},
    412: {"description": "If-Match names a version that is no longer current"},
    413: {"description": "Body over 64 KiB"},
    422: {"description": "Invalid offer, or a change that would make the catalogue invalid"},
}


class _NotFound(Exception):
    pass


class _Exists(Exception):
    pass


@router.get(
    "", summary="The catalogue: every offer (enabled or not), its version and warnings", responses=_ERRORS
)
async def list_offers(request: Request) -> Response:
    version, catalogue, source = await _current(request)
    body = {
        "version": version,
        "source": source,
        "served_version": _cache(request).version,
        "offers": [offer.model_dump(mode="json") for offer in catalogue.offers],
        "warnings": catalogue.warnings,
    }
    return _json(body, version)


@router.get("/{offer_id}", summary="One offer", responses={**_ERRORS, 404: {"description": "No such offer"}})
async def get_offer(request: Request, offer_id: OfferIdParam) -> Response:
    version, catalogue, _ = await _current(request)
    offer = catalogue.get(offer_id)
    if offer is None:
        raise HTTPException(404, _missing(offer_id))
    return _json({"version": version, "offer": offer.model_dump(mode="json")}, version)


@router.post(
    "",
    status_code=201,
    summary="Create an offer (409 if its id is used; disabled offers included)",
    responses=_WRITE_ERRORS,
    openapi_extra=_OFFER_BODY | _IF_MATCH_DOC,
)
async def create_offer(request: Request) -> Response:
    data = await _body(request)
    offer = _parse(data)

    def create(catalogue: Catalogue) -> Catalogue:
        if catalogue.get(offer.id) is not None:
            raise _Exists
        return catalogue.with_offer(offer)

    stored = await _change(request, create, offer.id)
    return _written(stored, offer.id, status_code=201)


@router.put(
    "/{offer_id}",
    summary="Replace an offer (fields left out take their defaults; 404 if it does not exist)",
    responses=_WRITE_ERRORS,
    openapi_extra=_OFFER_BODY | _IF_MATCH_DOC,
)
async def update_offer(request: Request, offer_id: OfferIdParam) -> Response:
    data = await _body(request)
    if isinstance(data, dict) and data.setdefault("id", offer_id) != offer_id:
        raise HTTPException(
            422,
            f"the body's id {data['id']!r} is not the path's {offer_id!r}; an offer cannot be "
            "renamed (create the new id, then disable the old one)",
        )
    offer = _parse(data)

    def update(catalogue: Catalogue) -> Catalogue:
        if catalogue.get(offer_id) is None:
            raise _NotFound
        return catalogue.with_offer(offer)

    return _written(await _change(request, update, offer_id), offer_id)


@router.post(
    "/{offer_id}/disable",
    summary="Disable an offer (kept in the catalogue, never shown)",
    responses=_WRITE_ERRORS,
    openapi_extra=_IF_MATCH_DOC,
)
async def disable_offer(request: Request, offer_id: OfferIdParam) -> Response:
    return _written(await _change(request, _set_enabled(offer_id, False), offer_id), offer_id)


@router.post(
    "/{offer_id}/enable",
    summary="Enable an offer again",
    responses=_WRITE_ERRORS,
    openapi_extra=_IF_MATCH_DOC,
)
async def enable_offer(request: Request, offer_id: OfferIdParam) -> Response:
    return _written(await _change(request, _set_enabled(offer_id, True), offer_id), offer_id)


def _set_enabled(offer_id: str, enabled: bool) -> Callable[[Catalogue], Catalogue]:
    def change(catalogue: Catalogue) -> Catalogue:
        if catalogue.get(offer_id) is None:
            raise _NotFound
        return catalogue.with_enabled(offer_id, enabled)

    return change


def _cache(request: Request) -> VersionedCache[Catalogue]:
    return request.app.state.catalogue


def _store(request: Request) -> CatalogueStore | None:
    return getattr(request.app.state, "catalogue_store", None)


async def _current(request: Request) -> tuple[str, Catalogue, str]:
    """(version, catalogue, source): Redis's when the catalogue lives there, else this replica's."""
    store = _store(request)
    cache = _cache(request)
    if store is None:
        return cache.version, cache.value, request.app.state.catalogue_source
    try:
        stored = await store.read()
    except CatalogueSnapshotError as exc:
        raise _unavailable(f"the catalogue in Redis cannot be used: {exc}") from exc
    except (RedisError, OSError, TimeoutError) as exc:
        raise _unavailable("the catalogue cannot be read from Redis right now; retry later") from exc
    if stored is None:  # not seeded yet (Redis was down when this replica started)
        return cache.version, cache.value, "file"
    return stored.version, stored.catalogue, "redis"


async def _change(
    request: Request, mutate: Callable[[Catalogue], Catalogue], offer_id: str
) -> StoredCatalogue:
    store = _store(request)
    cache = _cache(request)
    if store is None:
        settings = request.app.state.settings
        raise HTTPException(
            409,
            f"this API serves the catalogue file {settings.catalogue_path} as is "
            f"(catalogue source: {request.app.state.catalogue_source}); edit the file instead, or run "
            "with TRACKER_CATALOGUE_SOURCE=redis to manage offers through this API",
        )
    try:
        stored = await store.change(mutate, fallback=cache.value, if_match=_if_match(request))
    except _NotFound:
        raise HTTPException(404, _missing(offer_id)) from None
    except _Exists:
        raise HTTPException(
            409,
            f"offer {offer_id!r} already exists; change it with PUT {PREFIX}/{offer_id} "
            f"(or {PREFIX}/{offer_id}/enable if it is disabled)",
        ) from None
    except PreconditionFailed as exc:
        raise HTTPException(412, str(exc), headers=_etag(exc.current)) from None
    except CatalogueConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except CatalogueSnapshotError as exc:
        raise _unavailable(f"the catalogue in Redis cannot be used: {exc}") from exc
    except CatalogueError as exc:
        raise HTTPException(422, str(exc)) from None
    except (RedisError, OSError, TimeoutError) as exc:
        raise _unavailable(
            "the catalogue cannot be changed right now (Redis unavailable); retry later"
        ) from exc
    log.info("catalogue: offer %s changed by the admin API, version %s", offer_id, stored.version)
    # This replica serves the change now; the others at their next probe of the pointer.
    await cache.refresh()
    return stored


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPException(413, f"the body is {len(raw)} bytes; an offer takes at most {MAX_BODY_BYTES}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(422, f"the body is not valid JSON: {exc}") from None


def _parse(data: Any) -> Offer:
    try:
        return parse_offer(data)
    except CatalogueError as exc:
        raise HTTPException(422, str(exc)) from None


def _if_match(request: Request) -> str | None:
    value = request.headers.get("if-match")
    if value is None or value.strip() == "*":
        return None
    return value.strip().removeprefix("W/").strip('"')


def _etag(version: str | None) -> dict[str, str]:
    return {"ETag": f'"{version}"', **_NO_STORE} if version else dict(_NO_STORE)


def _missing(offer_id: str) -> str:
    return f"offer {offer_id!r} is not in the catalogue; GET {PREFIX} lists the offers"


def _unavailable(message: str) -> HTTPException:
    return HTTPException(503, message, headers={"Retry-After": "5", **_NO_STORE})


def _written(stored: StoredCatalogue, offer_id: str, *, status_code: int = 200) -> Response:
    offer = stored.catalogue.get(offer_id)
    body = {
        "version": stored.version,
        "previous": stored.previous,
        "offer": offer.model_dump(mode="json") if offer is not None else None,
        "warnings": stored.catalogue.warnings,
    }
    return _json(body, stored.version, status_code=status_code)


def _json(body: dict[str, Any], version: str, *, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(body), status_code=status_code, media_type="application/json", headers=_etag(version)
    )
