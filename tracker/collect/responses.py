"""JSON responses of the collector, encoded with orjson."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response


def json_response(status_code: int, content: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(content), status_code=status_code, headers=headers, media_type="application/json"
    )


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """``{"error": code, "message": one sentence, "errors": [{"field", "message"}]}``."""
    body: dict[str, Any] = {"error": code, "message": message}
    if errors:
        body["errors"] = [{"field": e["field"], "message": e["message"]} for e in errors]
    return json_response(status_code, body, headers)
