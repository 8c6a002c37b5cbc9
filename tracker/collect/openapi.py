"""The collector's OpenAPI document: the batch body the events route reads by hand, documented.

``POST /v1/events`` reads its raw body (size limits, then per-event validation), so
FastAPI cannot infer its schema; this adds ``EventBatch`` (with each event typed as the
``Event`` union of ``tracker/schema.py``) and the error body to the components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from tracker.schema import EVENT_ADAPTER, EventBatch

_REF = "#/components/schemas/{model}"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "Machine-readable code, e.g. too_large."},
        "message": {"type": "string", "description": "One sentence: what is wrong and what to do."},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def component_schemas() -> dict[str, Any]:
    event = EVENT_ADAPTER.json_schema(ref_template=_REF)
    schemas: dict[str, Any] = event.pop("$defs", {})
    batch = EventBatch.model_json_schema(ref_template=_REF)
    schemas.update(batch.pop("$defs", {}))
    batch["properties"]["events"]["items"] = {"$ref": _REF.format(model="Event")}
    schemas.update({"Event": event, "EventBatch": batch, "CollectorError": ERROR_SCHEMA})
    return schemas


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the batch schemas."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(component_schemas())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
