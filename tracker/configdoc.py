"""The configuration reference, generated from :class:`tracker.settings.Settings`.

Every setting is an environment variable ``TRACKER_<NAME>``. The one table in
``docs/CONFIGURATION.md`` is this module's output (``tracker config --markdown``),
and a test fails when the file and the settings disagree, so the documentation
cannot drift. Descriptions come from, in order: a field's ``description=``;
the comment block right above the field in ``tracker/settings.py`` (a comment
covers the fields that follow it up to a blank line or the next comment);
:data:`FALLBACK_DESCRIPTIONS` below, for fields that have neither.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic.fields import FieldInfo

from tracker.settings import REPO_ROOT, Settings

ENV_PREFIX = "TRACKER_"
# Values never printed by ``tracker config`` (they are shown as set / not set).
SECRETS = frozenset({"admin_token", "access_signing_key"})

FALLBACK_DESCRIPTIONS: dict[str, str] = {
    "environment": "`production` refuses unsafe values (the placeholder admin token, unregistered sites).",
    "kafka_bootstrap": "Kafka bootstrap servers, `host:port`, several separated by commas.",
    "topic_events": "Topic of validated events (key `site:visitor`).",
    "topic_events_dlq": "Topic of refused input with a machine-readable reason.",
    "topic_decisions": "Topic of offer decisions (offer shown, propensity).",
    "topic_sessions": "Topic of closed-session summaries.",
    "topic_erasures": "Topic of erasure requests (`POST /v1/admin/erase`).",
    "topic_replication": "Replication factor of the topics the project creates.",
    "redis_url": "Redis URL (`redis://host:port/db`, `rediss://` for TLS).",
    "redis_timeout_seconds": "Budget of one Redis call of the offer API (connect and read); "
    "past it the slot's default offer is served.",
    "collector_host": "Address the collector listens on (`0.0.0.0` in a container).",
    "collector_port": "Port of the collector.",
    "max_body_bytes": "Largest request body the collector reads (413 beyond).",
    "max_event_bytes": "Largest single event (beyond: dead-lettered as `too_large`).",
    "max_batch_events": "Most events in one batch (413 beyond).",
    "retry_after_seconds": "`Retry-After` sent with 503 answers.",
    "dlq_payload_max_bytes": "Bytes of a refused event's original payload kept in its dead letter.",
    "cors_max_age_seconds": "How long browsers may cache a CORS preflight answer.",
    "worker_app_id": "Faust app id, which is also the Kafka consumer group of the stream workers "
    "and the namespace of the click-model and catalogue keys in Redis.",
    "worker_store": "Faust table store (`memory://`, or `rocksdb://` where installed).",
    "worker_web_host": "Address the worker's web server (metrics, health) listens on.",
    "interest_half_life_seconds": "Half-life of a visitor's interest in a category.",
    "profile_retention_seconds": "Profiles expire after this long without a new event.",
    "api_host": "Address the offer API listens on (`0.0.0.0` in a container).",
    "api_port": "Port of the offer API.",
    "catalogue_path": "The offer catalogue file (YAML or JSON): the seed of the Redis catalogue "
    "(published again when its content changes) and what is served while Redis is unreachable; "
    "with `TRACKER_CATALOGUE_SOURCE=file`, the catalogue itself.",
    "admin_token": "Bearer token of the admin endpoints (`/v1/admin/...`); refused in "
    "production while it is the placeholder.",
}

_SECTION = re.compile(r"^\s*# --- (?P<title>.+?) -*\s*$")
_FIELD = re.compile(r"^    (?P<name>[a-z_][a-z0-9_]*)\s*:")
_COMMENT = re.compile(r"^\s*#\s?(?P<text>.*)$")


@dataclass(frozen=True)
class SettingDoc:
    name: str
    section: str
    type: str
    default: str
    description: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def setting_docs() -> list[SettingDoc]:
    """One entry per settings field, in the order of ``tracker/settings.py``.

    Raises ``ValueError`` naming every field that has no description at all.
    """
    sections, own, inherited = _source_notes()
    docs, missing = [], []
    for name, info in Settings.model_fields.items():
        description = (
            info.description or own.get(name) or FALLBACK_DESCRIPTIONS.get(name) or inherited.get(name)
        )
        if not description:
            missing.append(name)
            continue
        docs.append(
            SettingDoc(
                name=name,
                section=sections.get(name, "General"),
                type=_type_text(info),
                default=_default_text(info),
                description=description,
            )
        )
    if missing:
        raise ValueError(
            "settings without a description: "
            + ", ".join(missing)
            + ". Add a comment above each in tracker/settings.py (or description=...)."
        )
    return docs


def markdown() -> str:
    """``docs/CONFIGURATION.md``: every environment variable in one table."""
    lines = [
        "# Configuration",
        "",
        "Every service (collector, stream worker, offer API) reads its configuration from",
        "environment variables, and only from them, through one settings object",
        "(`tracker/settings.py`). This table is generated from it: regenerate it with",
        "`tracker config --markdown > docs/CONFIGURATION.md`; a test fails when they differ.",
        "`tracker config` prints the values in effect (secrets masked).",
        "",
        'Lists are JSON (`TRACKER_SITES=\'[{"id": "demo"}]\'`) unless the description says',
        "comma-separated. Durations are in seconds, sizes in bytes.",
        "",
        "| variable | section | type | default | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for doc in setting_docs():
        cells = [f"`{doc.env}`", doc.section, doc.type, doc.default, doc.description]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def effective(settings: Settings) -> list[tuple[str, str]]:
    """``(variable, value)`` for each setting as this process sees it, secrets masked."""
    rows = []
    for name, value in settings.model_dump(mode="json").items():
        if name in SECRETS:
            shown = "(set)" if value else "(empty)"
        else:
            shown = json.dumps(value) if isinstance(value, list | dict) else str(value)
        rows.append((ENV_PREFIX + name.upper(), shown))
    return rows


def _source_notes() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Section of each field, the comment right above it (own), and the comment above an
    earlier field of the same group (inherited: used only when nothing better exists)."""
    source = inspect.getsource(Settings).splitlines()
    sections: dict[str, str] = {}
    own: dict[str, str] = {}
    inherited: dict[str, str] = {}
    section, block, after_field = "General", [], False
    for line in source:
        if match := _SECTION.match(line):
            section, block, after_field = match["title"].strip(), [], False
        elif match := _COMMENT.match(line):
            if after_field:  # a comment after fields starts a new block
                block, after_field = [], False
            block.append(match["text"].strip())
        elif match := _FIELD.match(line):
            name = match["name"]
            sections[name] = section
            if block:
                (inherited if after_field else own)[name] = " ".join(block)
            after_field = True
        elif not line.strip():
            block, after_field = [], False
    return sections, own, inherited


def _type_text(info: FieldInfo) -> str:
    annotation = info.annotation
    text = _annotation_text(annotation)
    bounds = []
    for meta in info.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None and isinstance(meta, annotated_types.BaseMetadata):
                bounds.append(f"{sign} {_number(value)}")
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _annotation_text(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " | ".join(f"`{arg}`" for arg in get_args(annotation))
    if origin is typing.Annotated:
        return _annotation_text(get_args(annotation)[0])
    if origin in (types.UnionType, typing.Union):
        parts = [_annotation_text(arg) for arg in get_args(annotation) if arg is not type(None)]
        return " or ".join(parts) + " (optional)"
    if origin in (tuple, list):
        return "list"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(info: FieldInfo) -> str:
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "(unset)"
    if isinstance(value, Path):
        for root, label in ((REPO_ROOT, "<checkout>"), (Path.home(), "~")):
            if value.is_relative_to(root):
                return f"`{label}/{value.relative_to(root)}`"
        return f"`{value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple | list):
        return "(none)" if not value else f"`{json.dumps(list(value))}`"
    if isinstance(value, str):
        return f"`{value}`" if value else "(empty)"
    if isinstance(value, float | int):
        return f"`{_number(value)}`"
    return f"`{value}`"


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}".replace(",", "_") if isinstance(value, int) and abs(value) >= 10_000 else str(value)
