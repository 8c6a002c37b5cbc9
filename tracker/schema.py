"""The event schema: the one definition of what a tracked event is.

The snippet sends events in this shape, the collector validates against it,
the stream workers parse it back, and ``tracker schema`` exports it as JSON
Schema for integrators. Models forbid unknown fields so that no free-text
personal data slips in under a new name.

Wire format: JSON objects; timestamps are integer milliseconds since the Unix
epoch (what ``Date.now()`` gives in a browser).

Consent (:class:`BatchConsent`, the ``consent`` field of a batch): a request whose
browser sends ``DNT: 1`` or ``Sec-GPC: 1`` counts as a refusal, and the collector
writes none of its events, unless the batch carries
``"consent": {"state": "granted", "recorded": true}``: ``recorded`` means the visitor
explicitly granted consent on this site, not that the site's default state is granted.
The full HTTP contract is in ``docs/ARCHITECTURE.md`` ("Collector HTTP contract").
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1

# 2001-09-09 .. 2286-11-20 in epoch milliseconds: rejects seconds sent as ms and garbage.
MIN_TS_MS = 1_000_000_000_000
MAX_TS_MS = 9_999_999_999_999

SiteId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Site identifier.")]
VisitorId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="Anonymous first-party visitor id (never an email or a name).",
    ),
]
TimestampMs = Annotated[int, Field(ge=MIN_TS_MS, le=MAX_TS_MS, description="Epoch milliseconds.")]
Url = Annotated[str, Field(max_length=2048)]
ShortText = Annotated[str, Field(min_length=1, max_length=128)]
ProductId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
Category = Annotated[str, Field(min_length=1, max_length=64)]
Money = Annotated[float, Field(ge=0, le=1e9)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class EventType(StrEnum):
    PAGE_VIEW = "page_view"
    PAGE_PING = "page_ping"
    PRODUCT_VIEW = "product_view"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    PURCHASE = "purchase"
    SEARCH = "search"
    LINK_CLICK = "link_click"
    OFFER_IMPRESSION = "offer_impression"
    OFFER_CLICK = "offer_click"
    IDENTIFY = "identify"
    CONSENT = "consent"
    CUSTOM = "custom"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _EventBase(_Strict):
    event_id: UUID = Field(description="Client-generated UUID; the dedupe key end to end.")
    ts: TimestampMs = Field(description="Client timestamp when the event happened.")
    site_id: SiteId
    visitor_id: VisitorId
    session_id: VisitorId | None = None
    url: Url | None = None
    referrer: Url | None = None


class PageView(_EventBase):
    type: Literal[EventType.PAGE_VIEW]
    title: Annotated[str, Field(max_length=512)] | None = None
    # Pages may declare what they are about (a category listing, say).
    category: Category | None = None


class PagePing(_EventBase):
    type: Literal[EventType.PAGE_PING]
    scroll_depth: Annotated[int, Field(ge=0, le=100)] = 0
    engaged_ms: Annotated[int, Field(ge=0, le=3_600_000)] = 0


class ProductView(_EventBase):
    type: Literal[EventType.PRODUCT_VIEW]
    product_id: ProductId
    category: Category
    price: Money | None = None
    currency: Currency | None = None


class CartLine(_Strict):
    product_id: ProductId
    category: Category | None = None
    price: Money | None = None
    quantity: Annotated[int, Field(ge=1, le=10_000)] = 1


class AddToCart(_EventBase):
    type: Literal[EventType.ADD_TO_CART]
    product_id: ProductId
    category: Category | None = None
    price: Money | None = None
    quantity: Annotated[int, Field(ge=1, le=10_000)] = 1
    currency: Currency | None = None


class RemoveFromCart(_EventBase):
    type: Literal[EventType.REMOVE_FROM_CART]
    product_id: ProductId
    category: Category | None = None
    price: Money | None = None
    quantity: Annotated[int, Field(ge=1, le=10_000)] = 1
    currency: Currency | None = None


class Purchase(_EventBase):
    type: Literal[EventType.PURCHASE]
    order_id: ShortText
    value: Money
    currency: Currency
    items: Annotated[list[CartLine], Field(max_length=200)] = []


class Search(_EventBase):
    type: Literal[EventType.SEARCH]
    query: Annotated[str, Field(min_length=1, max_length=200)]


class LinkClick(_EventBase):
    type: Literal[EventType.LINK_CLICK]
    target_url: Url


class OfferImpression(_EventBase):
    type: Literal[EventType.OFFER_IMPRESSION]
    decision_id: ShortText
    offer_id: ShortText
    slot: ShortText | None = None


class OfferClick(_EventBase):
    type: Literal[EventType.OFFER_CLICK]
    decision_id: ShortText
    offer_id: ShortText
    slot: ShortText | None = None


class Identify(_EventBase):
    type: Literal[EventType.IDENTIFY]
    customer_hash: Annotated[
        str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 hex of the site's customer id.")
    ]


class Consent(_EventBase):
    type: Literal[EventType.CONSENT]
    state: Literal["granted", "denied", "pending"]


PropertyValue = Annotated[str, Field(max_length=256)] | int | float | bool


class Custom(_EventBase):
    type: Literal[EventType.CUSTOM]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    properties: Annotated[
        dict[Annotated[str, Field(max_length=64)], PropertyValue], Field(max_length=32)
    ] = {}


Event = Annotated[
    PageView
    | PagePing
    | ProductView
    | AddToCart
    | RemoveFromCart
    | Purchase
    | Search
    | LinkClick
    | OfferImpression
    | OfferClick
    | Identify
    | Consent
    | Custom,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class ServerContext(_Strict):
    """What the collector adds at the edge before an event is written anywhere."""

    received_at: TimestampMs
    ip_prefix: str | None = Field(default=None, description="Client IP truncated to /24 (v4) or /48 (v6).")
    browser: str | None = None
    os: str | None = None
    device: str | None = None
    is_bot: bool = False
    # A no-JavaScript page view (GET /v1/p.gif): its visitor_id is random per hit, not a visitor.
    anonymous: bool = False


class TrackedEvent(_Strict):
    """The record on the ``events`` topic: the validated event plus server context."""

    schema_version: int = SCHEMA_VERSION
    event: Event
    server: ServerContext


TRACKED_ADAPTER: TypeAdapter[TrackedEvent] = TypeAdapter(TrackedEvent)


class BatchConsent(_Strict):
    """The visitor's consent as the sender knows it; see the module docstring for DNT/GPC."""

    state: Literal["granted", "denied", "pending"]
    recorded: bool = Field(
        default=False, description="True only if the visitor explicitly granted consent on this site."
    )

    @property
    def explicit_grant(self) -> bool:
        """Granted and recorded: what overrides DNT and GPC."""
        return self.state == "granted" and self.recorded


class EventBatch(BaseModel):
    """Request body of ``POST /v1/events``. Events are validated one by one so
    that one bad event does not reject its neighbours. A batch is for one site:
    ``site_id`` (or, without it, the one ``site_id`` its events share)."""

    model_config = ConfigDict(extra="forbid")

    events: list[dict[str, Any]] = Field(min_length=1)
    sent_at: TimestampMs | None = None
    site_id: SiteId | None = None
    consent: BatchConsent | None = None


class DeadLetter(_Strict):
    """The record on ``events.dlq``: why an input was refused, and (a bounded part of) what it was."""

    schema_version: int = SCHEMA_VERSION
    reason: str = Field(description="Machine-readable reason code, e.g. 'schema', 'too_large'.")
    message: str
    errors: list[dict[str, Any]] = []
    received_at: TimestampMs
    site_id: str | None = None
    payload: str = Field(description="The original event as JSON, truncated to a bound.")
    payload_truncated: bool = False


class ErasureRequest(_Strict):
    """The record on ``erasures`` (key ``site:visitor``): forget this visitor everywhere.

    Written by the offer API's ``POST /v1/admin/erase`` once Kafka acknowledged it;
    consumed by the stream worker, which removes the profile and per-visitor state.
    ``request_id`` makes handling idempotent (a retried request carries the same id).
    """

    schema_version: int = SCHEMA_VERSION
    site_id: SiteId
    visitor_id: VisitorId
    request_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="UUID hex, no dashes.")]
    requested_at: TimestampMs


class SessionRecord(_Strict):
    """The record on ``sessions`` (key ``site:visitor``): one closed visit, from the stream worker.

    Delivery is at-least-once and a session the idle sweep closed can be re-opened by a
    late event and emitted again with a higher ``revision``: readers keep, per
    ``session_id``, the record with the highest revision. Times are event-time epoch ms.
    """

    schema_version: int = SCHEMA_VERSION
    session_id: str = Field(description="Stable id: derived from the session's first event id.")
    site_id: SiteId
    visitor_id: VisitorId
    start: int
    end: int
    duration_ms: int
    events: int
    page_views: int
    engaged_ms: int = Field(description="Sum over pages of the engaged time their pings reported.")
    max_scroll: int = Field(description="Deepest scroll (percent) any page ping reported.")
    products: list[str] = Field(description="Products viewed, added or bought (first 50, in order).")
    categories: list[str] = Field(description="Categories seen (first 20, in order).")
    cart_adds: int = Field(description="Units added to the cart.")
    purchases: int
    purchase_value: float
    landing_page: str | None = Field(description="First page's URL without query or fragment.")
    referrer_class: Literal["direct", "internal", "search", "social", "email", "paid", "campaign", "referral"]
    converted: bool = Field(description="At least one purchase in the session.")
    closed_by: Literal["gap", "source", "idle"] = Field(
        description="A later event after the inactivity gap, a new campaign or referrer, or the idle sweep."
    )
    revision: int = Field(default=1, ge=1)


# The adapter's compiled validator and serializer, called directly: the ``TypeAdapter``
# methods only forward to them, and their keyword handling is ~15 % of the call, which the
# collector pays once per event (and the stream worker once per record, below).
_validate_event = EVENT_ADAPTER.validator.validate_python
event_json = EVENT_ADAPTER.serializer.to_json
"""``EVENT_ADAPTER.dump_json(event)``, byte for byte, without the forwarding."""


def parse_event(data: dict[str, Any]) -> Event:
    """Validate one event; raises ``pydantic.ValidationError`` naming the field at fault."""
    return _validate_event(data)


_validate_tracked_json = TRACKED_ADAPTER.validator.validate_json


def parse_tracked(data: bytes | str) -> TrackedEvent:
    """Parse a record from the ``events`` topic."""
    return _validate_tracked_json(data)


def event_field(event: Event, name: str) -> Any:
    """``getattr(event, name, None)`` for a field only some event types have, without its cost
    when the field is missing: pydantic's ``__getattr__`` then raises and catches an
    ``AttributeError`` (microseconds, on the stream worker's per-event path). A model's field
    values are its ``__dict__``, so this reads exactly what attribute access would.

    >>> event = parse_event({"event_id": "7a1f0c3e-95b4-4c8e-9a55-0c6b6f2b9d10", "type": "search",
    ...                      "ts": 1_763_900_000_000, "site_id": "shop", "visitor_id": "visitor-01",
    ...                      "query": "red shoes"})
    >>> event_field(event, "query"), event_field(event, "category")
    ('red shoes', None)
    """
    return event.__dict__.get(name)


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of one event, for integrators (``tracker schema``)."""
    schema = EVENT_ADAPTER.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Tracker event"
    return schema


def partition_key(site_id: str, visitor_id: str) -> bytes:
    """Kafka key: all of one visitor's events land on one partition, in order."""
    return f"{site_id}:{visitor_id}".encode()
