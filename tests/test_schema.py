"""The event schema: what is accepted, what is refused, and the integrator export."""

from __future__ import annotations

import uuid

import pydantic
import pytest

from tracker.schema import (
    EventType,
    ServerContext,
    TrackedEvent,
    event_json_schema,
    parse_event,
    parse_tracked,
    partition_key,
)

T0 = 1_763_900_000_000


def base(**extra) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "ts": T0,
        "site_id": "shop",
        "visitor_id": "visitor-0001",
        **extra,
    }


def test_every_event_type_has_a_model() -> None:
    schema = event_json_schema()
    mapped = set(schema["discriminator"]["mapping"])
    assert mapped == {t.value for t in EventType}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (base(type="product_view", category="shoes"), "product_id"),
        (base(type="page_view", email="a@b.c"), "email"),  # unknown fields are refused
        (base(type="identify", customer_hash="someone@example.com"), "customer_hash"),
        (base(type="page_view", ts=1_763_900_000), "ts"),  # seconds, not milliseconds
        (base(type="page_view", visitor_id="x"), "visitor_id"),
        (base(type="teleport"), "type"),
    ],
)
def test_invalid_events_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        parse_event(data)
    assert any(field in ".".join(map(str, e["loc"])) or field in e["msg"] for e in info.value.errors())


def test_tracked_event_round_trips_through_json() -> None:
    ev = parse_event(base(type="add_to_cart", product_id="sku-1", quantity=2, price=9.5))
    tracked = TrackedEvent(event=ev, server=ServerContext(received_at=T0 + 5, ip_prefix="203.0.113.0"))
    again = parse_tracked(tracked.model_dump_json())
    assert again == tracked
    assert again.event.type is EventType.ADD_TO_CART


def test_partition_key_groups_a_visitor() -> None:
    assert partition_key("shop", "visitor-0001") == b"shop:visitor-0001"
