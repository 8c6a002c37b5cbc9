"""Error bodies shared by the FastAPI routes and the ``/v1/offers`` fast path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson


def validation_error_body(errors: Iterable[Mapping[str, Any]]) -> bytes:
    """The 422 body: one readable sentence per bad parameter; bad values are never echoed back.

    ``errors`` are pydantic-style error dicts (``loc``, ``type``, ``msg``).
    """
    described = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        where, name = (loc[0], ".".join(loc[1:])) if len(loc) > 1 else ("request", ".".join(loc))
        if error.get("type") == "missing":
            message = f"{where} parameter {name!r} is required"
        else:
            message = f"{where} parameter {name!r} is invalid: {error.get('msg', 'invalid value')}"
        described.append({"loc": loc, "type": error.get("type"), "message": message})
    detail = "; ".join(e["message"] for e in described) or "invalid request"
    return orjson.dumps({"detail": detail, "errors": described})
