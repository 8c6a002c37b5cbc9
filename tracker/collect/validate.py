"""From request body to Kafka records: parse the batch, validate each event on its own.

Pure functions, no I/O. A body that is not a batch at all raises a
:class:`~tracker.errors.BatchError` (the whole request is refused); an event that
is invalid becomes a :class:`Rejection` carrying its :class:`~tracker.schema.DeadLetter`,
so that one bad event never costs its neighbours.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pydantic

from tracker.errors import BatchTooLargeError, InvalidBatchError, MalformedBatchError
from tracker.kafka_producer import Record
from tracker.schema import (
    SCHEMA_VERSION,
    BatchConsent,
    DeadLetter,
    Event,
    EventBatch,
    EventType,
    ServerContext,
    TrackedEvent,
    event_json,
    parse_event,
    partition_key,
)

REASON_SCHEMA = "schema"
REASON_TOO_LARGE = "too_large"
REASON_SITE_MISMATCH = "site_mismatch"
# Errors reported per event: an event with hundreds of unknown keys gets a bounded answer.
MAX_ERRORS_PER_EVENT = 20
# An echoed event_id is the client's own value, but a bounded one.
MAX_ECHOED_ID_CHARS = 64
# The schema's id patterns, to tell a readable site or visitor id in an invalid event.
_SITE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_EVENT_TYPES = ", ".join(t.value for t in EventType)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event refused by the collector: what the client is told, and what the DLQ keeps."""

    index: int
    event_id: str | None
    dead_letter: DeadLetter
    # ``site:visitor`` when both are readable, so a visitor's dead letters stay together.
    key: bytes | None = None

    @property
    def reason(self) -> str:
        return self.dead_letter.reason

    def public(self) -> dict[str, Any]:
        """The entry in the response's ``rejected`` list."""
        return {
            "index": self.index,
            "event_id": self.event_id,
            "reason": self.reason,
            "errors": [{"field": e["field"], "message": e["message"]} for e in self.dead_letter.errors],
        }


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    """A body that is a batch: its site, the sender's consent, and the raw events (not yet validated)."""

    site_id: str
    consent: BatchConsent | None
    events: list[Any]

    @property
    def consent_recorded(self) -> bool:
        """Explicit, recorded consent: what overrides DNT and GPC."""
        return self.consent is not None and self.consent.explicit_grant


@dataclass(frozen=True, slots=True)
class SplitBatch:
    """A batch validated event by event; every accepted event shares the request's context."""

    events: list[Event]
    context: ServerContext
    rejected: list[Rejection]

    @property
    def accepted(self) -> list[TrackedEvent]:
        return [TrackedEvent(event=event, server=self.context) for event in self.events]


def parse_batch(body: bytes, *, max_events: int) -> ParsedBatch:
    """The batch in a request body, or a :class:`BatchError` saying what is wrong.

    The envelope (``site_id``, ``consent``, ``sent_at``, no unknown keys) is checked
    against :class:`~tracker.schema.EventBatch`; the events themselves are left to
    :func:`split_batch`, one by one. The batch's site is its ``site_id``, or else the
    one well-formed ``site_id`` its events share.
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBatchError(
            f"Body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (byte {exc.pos})"
        ) from None
    if not isinstance(payload, dict):
        raise InvalidBatchError(
            f'Body must be a JSON object like {{"events": [...]}}, got {_json_type(payload)}',
            [{"field": "", "message": "expected an object"}],
        )
    events = payload.get("events")
    if not isinstance(events, list):
        found = "no 'events' key" if "events" not in payload else f"'events' is {_json_type(events)}"
        raise InvalidBatchError(
            f"Body must have an 'events' list; found {found}",
            [{"field": "events", "message": "expected a list of event objects"}],
        )
    if len(events) > max_events:
        raise BatchTooLargeError(
            f"Batch has {len(events)} events; the limit is {max_events}: split it and send the parts"
        )
    try:
        # The envelope rules (sent_at, no unknown keys, at least one event) apply here, with a
        # placeholder event: each real event is validated later, alone.
        envelope = EventBatch.model_validate({**payload, "events": [{}] if events else []})
    except pydantic.ValidationError as exc:
        errors = [_error(e) for e in exc.errors(include_url=False, include_input=False)]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise InvalidBatchError(f"Batch envelope is invalid: {detail}", errors) from None
    site_id = envelope.site_id
    if site_id is None:
        sites = {site for raw in events if (site := _readable(raw, "site_id", _SITE_ID))}
        if len(sites) != 1:
            found = "none has a valid one" if not sites else f"they name {len(sites)} sites"
            raise InvalidBatchError(
                f"Cannot tell the batch's site: {found}; send one site per batch, with 'site_id'",
                [{"field": "site_id", "message": "expected the batch's site id"}],
            )
        site_id = sites.pop()
    return ParsedBatch(site_id=site_id, consent=envelope.consent, events=events)


def split_batch(
    raw_events: Sequence[Any],
    context: ServerContext,
    *,
    max_event_bytes: int,
    dlq_payload_max_bytes: int,
    site_id: str | None = None,
) -> SplitBatch:
    """Validate every event alone: valid ones become :class:`TrackedEvent`, others :class:`Rejection`.

    With ``site_id``, an event for another site is rejected (``site_mismatch``): the
    sender was authorised for the batch's site only.
    """
    accepted: list[Event] = []
    rejected: list[Rejection] = []

    def reject(index: int, raw: Any, encoded: bytes, reason: str, message: str, errors: list) -> None:
        dead = DeadLetter(
            reason=reason,
            message=message,
            errors=errors[:MAX_ERRORS_PER_EVENT],
            received_at=context.received_at,
            site_id=_readable(raw, "site_id", _SITE_ID),
            payload=_truncate_utf8(encoded, dlq_payload_max_bytes),
            payload_truncated=len(encoded) > dlq_payload_max_bytes,
        )
        visitor_id = _readable(raw, "visitor_id", _VISITOR_ID)
        key = partition_key(dead.site_id, visitor_id) if dead.site_id and visitor_id else None
        rejected.append(Rejection(index, _readable_event_id(raw), dead, key))

    for index, raw in enumerate(raw_events):
        # Size is measured on the compact re-encoding: the original bytes of one event
        # inside a batch are not kept, and whitespace should not count against a client.
        encoded = orjson.dumps(raw)
        if len(encoded) > max_event_bytes:
            message = f"Event is {len(encoded)} bytes; the limit is {max_event_bytes} bytes"
            reject(index, raw, encoded, REASON_TOO_LARGE, message, [_field_error("", message, "too_large")])
            continue
        if not isinstance(raw, dict):
            message = f"An event must be a JSON object, got {_json_type(raw)}"
            reject(index, raw, encoded, REASON_SCHEMA, message, [_field_error("", message, "object_type")])
            continue
        try:
            event = parse_event(raw)
        except pydantic.ValidationError as exc:
            errors = [_error(e, raw) for e in exc.errors(include_url=False, include_input=False)]
            head = "; ".join(f"{e['field'] or '(event)'}: {e['message']}" for e in errors[:3])
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            reject(
                index, raw, encoded, REASON_SCHEMA, f"{len(errors)} invalid field(s): {head}{more}", errors
            )
            continue
        if site_id is not None and event.site_id != site_id:
            message = f"Event is for site {event.site_id!r} but the batch is for site {site_id!r}"
            reject(
                index,
                raw,
                encoded,
                REASON_SITE_MISMATCH,
                message,
                [_field_error("site_id", message, REASON_SITE_MISMATCH)],
            )
            continue
        accepted.append(event)
    return SplitBatch(events=accepted, context=context, rejected=rejected)


def to_records(split: SplitBatch, *, topic_events: str, topic_dlq: str) -> list[Record]:
    """Kafka records for a split batch: events keyed by ``site:visitor``, dead letters too when readable.

    Each value is exactly ``TRACKED_ADAPTER.dump_json(TrackedEvent(event, context))``, assembled
    from the event's JSON and the context's, serialised once per batch: half the cost per event.
    """
    head = b'{"schema_version":%d,"event":' % SCHEMA_VERSION
    tail = b',"server":' + split.context.model_dump_json().encode() + b"}"
    records = [
        Record(
            topic_events,
            partition_key(event.site_id, event.visitor_id),
            head + event_json(event) + tail,
        )
        for event in split.events
    ]
    records.extend(Record(topic_dlq, r.key, r.dead_letter.model_dump_json().encode()) for r in split.rejected)
    return records


def field_errors(exc: pydantic.ValidationError, raw: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """A validation error as ``[{"field", "message", "type"}]``, paths as the client wrote them."""
    return [_error(e, raw) for e in exc.errors(include_url=False, include_input=False)]


def _error(error: Any, raw: dict[str, Any] | None = None) -> dict[str, str]:
    """A pydantic error as ``{"field": "items.0.price", "message": ..., "type": ...}``."""
    loc = list(error["loc"])
    # Discriminated unions prefix the path with the event type; the client did not write that.
    if raw is not None and loc and loc[0] == raw.get("type") and isinstance(loc[0], str):
        loc = loc[1:]
    kind = error["type"]
    if kind == "union_tag_invalid":
        tag = str(error.get("ctx", {}).get("tag", ""))[:MAX_ECHOED_ID_CHARS]
        return _field_error("type", f"Unknown event type {tag!r}; expected one of: {_EVENT_TYPES}", kind)
    if kind == "union_tag_not_found":
        return _field_error("type", f"Missing 'type'; expected one of: {_EVENT_TYPES}", kind)
    return _field_error(".".join(str(part) for part in loc), error["msg"], kind)


def _field_error(field: str, message: str, kind: str) -> dict[str, str]:
    return {"field": field, "message": message, "type": kind}


def _readable_event_id(raw: Any) -> str | None:
    value = raw.get("event_id") if isinstance(raw, dict) else None
    return value[:MAX_ECHOED_ID_CHARS] if isinstance(value, str) else None


def _readable(raw: Any, field: str, pattern: re.Pattern[str]) -> str | None:
    """``raw[field]`` if it is well-formed: DLQ readers group and key by it, so junk does not count."""
    value = raw.get(field) if isinstance(raw, dict) else None
    return value if isinstance(value, str) and pattern.match(value) else None


def _truncate_utf8(data: bytes, limit: int) -> str:
    """At most ``limit`` bytes of ``data`` as text, never splitting a character."""
    return data[:limit].decode("utf-8", errors="ignore")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
