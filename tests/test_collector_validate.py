"""Parsing a batch body and splitting it into tracked events and dead letters (pure)."""

from __future__ import annotations

import orjson
import pytest
from collector_support import page_view, product_view

from tracker.collect.enrich import now_ms
from tracker.collect.validate import (
    MAX_ERRORS_PER_EVENT,
    REASON_SCHEMA,
    REASON_TOO_LARGE,
    parse_batch,
    split_batch,
    to_records,
)
from tracker.errors import BatchTooLargeError, InvalidBatchError, MalformedBatchError
from tracker.schema import TRACKED_ADAPTER, DeadLetter, ServerContext, parse_tracked, partition_key

SITE = "shop-1"
CONTEXT = ServerContext(received_at=1_700_000_000_000, ip_prefix="203.0.113.0/24")


def split(events: list, *, max_event_bytes: int = 32_768, dlq_payload_max_bytes: int = 4096):
    return split_batch(
        events, CONTEXT, max_event_bytes=max_event_bytes, dlq_payload_max_bytes=dlq_payload_max_bytes
    )


# --- parse_batch --------------------------------------------------------------------------


def test_parse_batch_returns_the_raw_events() -> None:
    events = [page_view(SITE), {"anything": 1}, 7]
    body = orjson.dumps({"events": events, "sent_at": now_ms()})
    batch = parse_batch(body, max_events=10)
    assert batch.events == events
    assert batch.site_id == SITE  # the one well-formed site id the events share
    assert batch.consent is None and not batch.consent_recorded


def test_parse_batch_reads_site_and_consent_from_the_envelope() -> None:
    body = orjson.dumps(
        {"site_id": "other", "consent": {"state": "granted", "recorded": True}, "events": [page_view(SITE)]}
    )
    batch = parse_batch(body, max_events=10)
    assert batch.site_id == "other"
    assert batch.consent_recorded
    assert not parse_batch(
        orjson.dumps({"consent": {"state": "granted"}, "events": [page_view(SITE)]}), max_events=10
    ).consent_recorded


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"events": [page_view("one"), page_view("two")]}, "they name 2 sites"),
        ({"events": [{"type": "page_view"}]}, "none has a valid one"),
        ({"events": [{}], "site_id": "Not A Site"}, "site_id"),
        ({"events": [{}], "site_id": "s", "consent": {"state": "maybe"}}, "consent.state"),
        ({"events": [{}], "site_id": "s", "consent": {"state": "granted", "why": "x"}}, "consent.why"),
    ],
)
def test_parse_batch_needs_one_site_and_a_valid_consent(payload: dict, fragment: str) -> None:
    with pytest.raises(InvalidBatchError, match=fragment):
        parse_batch(orjson.dumps(payload), max_events=10)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"events": [', "line 1 column 13 (byte 12)"),
        (b"", "empty"),
        (b'{"events": []} trailing', "line 1 column 16"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"{'events': []}", "line 1 column 2"),
    ],
)
def test_parse_batch_names_the_json_error_and_its_position(body: bytes, fragment: str) -> None:
    with pytest.raises(MalformedBatchError) as info:
        parse_batch(body, max_events=10)
    assert info.value.message.startswith("Body is not valid JSON")
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([], "got a list"),
        ("events", "got a string"),
        ({}, "no 'events' key"),
        ({"events": {"0": {}}}, "'events' is an object"),
        ({"events": None}, "'events' is null"),
        ({"events": []}, "events: List should have at least 1 item"),
        ({"events": [{}], "extra": 1}, "extra: Extra inputs are not permitted"),
        ({"events": [{}], "sent_at": 1_700_000_000}, "sent_at: Input should be greater than or equal"),
    ],
)
def test_parse_batch_refuses_what_is_not_a_batch(payload: object, fragment: str) -> None:
    with pytest.raises(InvalidBatchError) as info:
        parse_batch(orjson.dumps(payload), max_events=10)
    assert fragment in info.value.message
    assert info.value.errors, "field-level errors are listed"


def test_parse_batch_refuses_too_many_events() -> None:
    body = orjson.dumps({"events": [{}] * 11})
    with pytest.raises(BatchTooLargeError, match="Batch has 11 events; the limit is 10"):
        parse_batch(body, max_events=10)
    assert len(parse_batch(orjson.dumps({"events": [{}] * 10, "site_id": SITE}), max_events=10).events) == 10


# --- split_batch --------------------------------------------------------------------------


def test_valid_events_become_tracked_events_with_the_server_context() -> None:
    events = [page_view(SITE), product_view(SITE, visitor_id="visitor-0002")]
    result = split(events)
    assert result.rejected == []
    assert [str(t.event.event_id) for t in result.accepted] == [e["event_id"] for e in events]
    assert all(t.server == CONTEXT for t in result.accepted)


def test_invalid_events_are_rejected_alone_with_field_paths() -> None:
    good = page_view(SITE)
    bad_visitor = page_view(SITE, visitor_id="x")  # too short
    bad_nested = {
        **product_view(SITE),
        "type": "purchase",
        "order_id": "o-1",
        "value": 10,
        "currency": "EUR",
        "items": [{"product_id": "sku 1"}],  # whitespace not allowed
    }
    del bad_nested["product_id"], bad_nested["category"], bad_nested["price"]
    unknown_type = {**page_view(SITE), "type": "teleport"}
    extra_field = page_view(SITE, email="someone@example.com")

    result = split([good, bad_visitor, bad_nested, unknown_type, extra_field, "nope"])

    assert [str(t.event.event_id) for t in result.accepted] == [good["event_id"]]
    by_index = {r.index: r.public() for r in result.rejected}
    assert sorted(by_index) == [1, 2, 3, 4, 5]
    assert by_index[1]["event_id"] == bad_visitor["event_id"]
    assert by_index[1]["reason"] == REASON_SCHEMA
    assert [e["field"] for e in by_index[1]["errors"]] == ["visitor_id"]
    assert [e["field"] for e in by_index[2]["errors"]] == ["items.0.product_id"]
    assert by_index[3]["errors"][0]["field"] == "type"
    assert "Unknown event type 'teleport'" in by_index[3]["errors"][0]["message"]
    assert [e["field"] for e in by_index[4]["errors"]] == ["email"]
    assert by_index[5] == {
        "index": 5,
        "event_id": None,
        "reason": REASON_SCHEMA,
        "errors": [{"field": "", "message": "An event must be a JSON object, got a string"}],
    }


def test_missing_type_is_reported_on_the_type_field() -> None:
    event = page_view(SITE)
    del event["type"]
    (rejection,) = split([event]).rejected
    assert rejection.public()["errors"][0]["field"] == "type"
    assert "Missing 'type'" in rejection.public()["errors"][0]["message"]


def test_dead_letter_keeps_reason_errors_site_and_payload() -> None:
    event = page_view(SITE, visitor_id="x")
    (rejection,) = split([event]).rejected
    dead = rejection.dead_letter
    assert dead.reason == REASON_SCHEMA
    assert dead.site_id == SITE
    assert dead.received_at == CONTEXT.received_at
    assert orjson.loads(dead.payload) == event
    assert dead.payload_truncated is False
    assert dead.errors[0]["field"] == "visitor_id"
    assert dead.errors[0]["type"] == "string_pattern_mismatch"
    assert "visitor_id" in dead.message


def test_dead_letter_site_id_only_when_well_formed() -> None:
    result = split([{"site_id": "Not A Site!"}, {"site_id": 42}, ["x"]])
    assert [r.dead_letter.site_id for r in result.rejected] == [None, None, None]


def test_oversized_event_is_rejected_as_too_large_with_truncated_payload() -> None:
    big = page_view(SITE, title="é" * 600)  # 2 bytes each in UTF-8
    result = split([big, page_view(SITE)], max_event_bytes=1024, dlq_payload_max_bytes=101)
    assert len(result.accepted) == 1
    (rejection,) = result.rejected
    assert rejection.index == 0
    assert rejection.reason == REASON_TOO_LARGE
    assert rejection.event_id == big["event_id"]
    dead = rejection.dead_letter
    assert dead.payload_truncated is True
    assert len(dead.payload.encode()) <= 101  # never splits the 2-byte character
    assert orjson.dumps(big).decode().startswith(dead.payload)
    assert "the limit is 1024 bytes" in dead.message


def test_error_list_is_bounded() -> None:
    event = page_view(SITE, **{f"extra_{i}": i for i in range(100)})
    (rejection,) = split([event]).rejected
    assert len(rejection.public()["errors"]) == MAX_ERRORS_PER_EVENT
    assert "(and " in rejection.dead_letter.message


def test_echoed_event_id_is_bounded() -> None:
    (rejection,) = split([{"event_id": "x" * 10_000}]).rejected
    assert rejection.event_id == "x" * 64


# --- to_records ----------------------------------------------------------------------------


def test_records_key_events_by_visitor_and_send_dead_letters_to_the_dlq() -> None:
    events = [
        page_view(SITE, visitor_id="visitor-0001"),
        {"bad": True},
        page_view(SITE, visitor_id="visitor-0002"),
        page_view(SITE, visitor_id="visitor-0003", ts="yesterday"),
        page_view(SITE, visitor_id="no"),
    ]
    records = to_records(split(events), topic_events="ev", topic_dlq="ev.dlq")
    assert [r.topic for r in records] == ["ev", "ev", "ev.dlq", "ev.dlq", "ev.dlq"]
    assert records[0].key == partition_key(SITE, "visitor-0001")
    assert records[1].key == partition_key(SITE, "visitor-0002")
    assert records[2].key is None  # nothing readable: spread over partitions
    assert records[3].key == partition_key(SITE, "visitor-0003")  # readable ids: with the visitor
    assert records[4].key is None  # a malformed visitor id is not used as a key
    tracked = parse_tracked(records[0].value)
    assert str(tracked.event.event_id) == events[0]["event_id"]
    assert tracked.server == CONTEXT
    dead = DeadLetter.model_validate_json(records[2].value)
    assert dead.reason == REASON_SCHEMA


def test_events_for_another_site_than_the_batch_are_rejected() -> None:
    mine, theirs = page_view(SITE), page_view("elsewhere")
    split = split_batch(
        [mine, theirs], CONTEXT, max_event_bytes=32_768, dlq_payload_max_bytes=1024, site_id=SITE
    )
    assert [str(t.event.event_id) for t in split.accepted] == [mine["event_id"]]
    (rejection,) = split.rejected
    assert rejection.reason == "site_mismatch"
    assert rejection.public()["errors"][0]["field"] == "site_id"


def test_event_records_are_byte_for_byte_the_tracked_event_json() -> None:
    events = [page_view(SITE), product_view(SITE, visitor_id="visitor-0002")]
    split = split_batch(events, CONTEXT, max_event_bytes=32_768, dlq_payload_max_bytes=1024)
    records = to_records(split, topic_events="events", topic_dlq="events.dlq")
    for record, tracked in zip(records, split.accepted, strict=True):
        assert record.value == TRACKED_ADAPTER.dump_json(tracked)
        assert parse_tracked(record.value) == tracked
