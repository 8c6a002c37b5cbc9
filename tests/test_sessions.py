"""Sessions (pure logic): boundaries by gap, source change and lateness; what a session records."""

from __future__ import annotations

import uuid

import pytest

from tracker.models.sessions import Session, SessionRules, landing_page, referrer_class, source_key
from tracker.schema import parse_event

T0 = 1_763_900_000_000
MIN = 60_000
RULES = SessionRules(gap_ms=30 * MIN, split_on_source=True)


def ev(type_: str = "page_view", ts: int = T0, **extra):
    data = {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "ts": ts,
        "site_id": "shop",
        "visitor_id": "visitor-01",
    }
    data.setdefault("url", "https://shop.example/")
    data.update(extra)
    return parse_event(data)


def started(event=None, at: int = T0) -> Session:
    event = event or ev(ts=at)
    session = Session.begin("s1", event, at)
    session.add(event, at)
    return session


def test_a_gap_longer_than_the_setting_starts_a_new_session() -> None:
    s = started()
    assert RULES.boundary(s, ev(ts=T0 + 29 * MIN), T0 + 29 * MIN) is None
    assert RULES.boundary(s, ev(ts=T0 + 31 * MIN), T0 + 31 * MIN) == "gap"


def test_out_of_order_within_a_gap_joins_and_older_is_late() -> None:
    s = started(at=T0)
    s.add(ev(ts=T0 + 20 * MIN), T0 + 20 * MIN)
    assert RULES.boundary(s, ev(ts=T0 - 10 * MIN), T0 - 10 * MIN) is None
    s.add(ev(ts=T0 - 10 * MIN), T0 - 10 * MIN)
    assert (s.start, s.last, s.duration_ms) == (T0 - 10 * MIN, T0 + 20 * MIN, 30 * MIN)
    assert RULES.boundary(s, ev(ts=T0 - 45 * MIN), T0 - 45 * MIN) == "late"


def test_a_page_view_from_a_new_campaign_or_external_referrer_splits_if_configured() -> None:
    s = started(ev(url="https://shop.example/?utm_source=news&utm_campaign=spring"))
    same = ev(ts=T0 + MIN, url="https://shop.example/p?utm_source=news&utm_campaign=spring")
    internal = ev(ts=T0 + MIN, url="https://shop.example/p", referrer="https://shop.example/")
    other = ev(ts=T0 + MIN, url="https://shop.example/?utm_source=ads&utm_medium=cpc")
    assert RULES.boundary(s, same, T0 + MIN) is None
    assert RULES.boundary(s, internal, T0 + MIN) is None
    assert RULES.boundary(s, other, T0 + MIN) == "source"
    assert SessionRules(gap_ms=30 * MIN, split_on_source=False).boundary(s, other, T0 + MIN) is None


def test_engaged_time_adds_each_pages_latest_ping_and_scroll_is_the_deepest() -> None:
    s = started()
    for engaged, depth in ((10_000, 20), (20_000, 60), (15_000, 40)):  # the last one arrived late
        s.add(ev("page_ping", engaged_ms=engaged, scroll_depth=depth), T0)
    s.add(ev(url="https://shop.example/next"), T0 + MIN)  # a new page: its pings start from 0
    s.add(ev("page_ping", engaged_ms=5_000, scroll_depth=10), T0 + MIN)
    assert (s.engaged_ms, s.max_scroll, s.page_views) == (25_000, 60, 2)


def test_the_record_has_what_the_sessions_topic_promises() -> None:
    s = started(ev(url="https://shop.example/c/shoes?email=x@y.z", referrer="https://www.google.com/"))
    s.add(ev("product_view", ts=T0 + MIN, product_id="sku-1", category="shoes"), T0 + MIN)
    s.add(ev("add_to_cart", ts=T0 + 2 * MIN, product_id="sku-1", quantity=2), T0 + 2 * MIN)
    s.add(
        ev(
            "purchase",
            ts=T0 + 3 * MIN,
            order_id="o1",
            value=99.5,
            currency="EUR",
            items=[{"product_id": "sku-1", "category": "shoes"}],
        ),
        T0 + 3 * MIN,
    )
    record = s.record("shop", "visitor-01", closed_by="gap", revision=1)
    assert record.landing_page == "https://shop.example/c/shoes"
    assert record.referrer_class == "search"
    assert (record.cart_adds, record.purchases, record.purchase_value, record.converted) == (2, 1, 99.5, True)
    assert record.products == ["sku-1"] and record.categories == ["shoes"]
    assert (record.events, record.duration_ms) == (4, 3 * MIN)


@pytest.mark.parametrize(
    ("url", "referrer", "expected"),
    [
        ("https://s.example/?fbclid=1", "https://facebook.com/", "paid"),
        ("https://s.example/", "https://l.facebook.com/", "social"),
        ("https://s.example/", "https://blog.example/post", "referral"),
        ("https://s.example/?utm_campaign=x", None, "campaign"),
        ("https://www.s.example/", "https://s.example/", "internal"),
    ],
)
def test_referrer_classes(url: str, referrer: str | None, expected: str) -> None:
    assert referrer_class(url, referrer) == expected


def test_source_keys_and_landing_pages_ignore_what_they_should() -> None:
    assert source_key("https://s.example/", None) is None
    assert source_key("https://s.example/?gclid=1", None) == "click:gclid"
    assert landing_page("not a url") is None


def test_session_state_round_trip_is_exact() -> None:
    s = started(ev(referrer="https://news.example/"))
    s.add(ev("product_view", ts=T0 + MIN, product_id="sku-1", category="shoes"), T0 + MIN)
    assert Session.from_state(s.to_state()) == s
