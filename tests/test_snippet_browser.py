"""The browser snippet end to end: Debian's headless Chromium (playwright-core) on pages
of a static test site that embed the paste-in loader, against the real collector and
offer API (as processes) and the session's real Kafka.

What arrives is read from the ``events`` topic: "exactly once" means every expected
event is there and no ``event_id`` appears twice.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from snippet_support import Browser, KafkaEvents, StaticSite, build_snippet, count, types

from tracker.devstack.process import free_port
from tracker.devstack.services import ServiceProcess
from tracker.schema import parse_event
from tracker.settings import Settings, SiteConfig

pytestmark = pytest.mark.integration

UUID4 = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
THIRTEEN_MONTHS_SECONDS = 395 * 86_400
XSS_SLOT = "xss-test"
XSS_TITLE = '<img src=x onerror="window.__pwned=1">Deal'
# A page expression: whether n events wait in the persistent queue.
QUEUED = "(n) => Object.keys(localStorage).filter((k) => k.startsWith('trk:q:')).length === n"


@dataclass
class Product:
    """The collector and offer API as processes, with sites registered for the test pages."""

    settings: Settings
    log_dir: Path
    site_ids: list[str]
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def collector(self) -> str:
        return f"http://127.0.0.1:{self.settings.collector_port}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    def start(self, name: str, settings: Settings | None = None, *, wait_ready: bool = True) -> None:
        service = ServiceProcess(name, settings or self.settings, self.log_dir)
        if wait_ready:
            service.start(timeout=90)
        else:
            # A collector without Kafka is alive (and answers 503) but never ready.
            service.process.start()
            health = f"{self.collector}/healthz"
            service.process.wait_until(lambda: _http_ok(health), 60, "alive")
        self.services[name] = service

    def stop(self, name: str) -> None:
        self.services.pop(name).stop()


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticSite]:
    build_snippet()
    site = StaticSite(tmp_path_factory.mktemp("site"))
    yield site
    site.close()


@pytest.fixture(scope="module")
def product(stack, web: StaticSite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    site_ids = [f"snip-{uuid.uuid4().hex[:8]}-{n}" for n in range(24)]
    catalogue = yaml.safe_load((Settings().catalogue_path).read_text())
    catalogue["offers"].append(
        {
            "id": "xss-probe",
            "slots": [XSS_SLOT],
            "categories": [],
            "title": XSS_TITLE,
            "body": "<script>window.__pwned=2</script>",
            "link": "https://elsewhere.example/deal?a=1&b=<2>",
            "cta": "<b>Go</b>",
            "default": True,
        }
    )
    catalogue_path = tmp_path_factory.mktemp("catalogue") / "catalogue.yaml"
    catalogue_path.write_text(yaml.safe_dump(catalogue, allow_unicode=True))
    # Its own worker app id: its own catalogue namespace in the shared Redis (the file seeds it).
    settings = stack.service_settings(
        "snip",
        sites=tuple(SiteConfig(id=site, origins=(web.origin,)) for site in site_ids),
        catalogue_path=catalogue_path,
        visitor_cookie_enabled=True,
        visitor_cookie_secure=False,  # the test pages are plain http
        retry_after_seconds=1,
        shutdown_grace_seconds=2,
    )
    running = Product(settings, tmp_path_factory.mktemp("snippet-logs"), site_ids)
    try:
        running.start("collector")
        running.start("api")
        yield running
    finally:
        for name in list(running.services):
            running.stop(name)


@pytest.fixture(scope="module")
def kafka(stack, product: Product) -> Iterator[KafkaEvents]:
    events = KafkaEvents(stack.kafka_bootstrap, product.settings.topic_events)
    yield events
    events.close()


@pytest.fixture
def site(product: Product) -> str:
    """A site id registered with the collector for the test site's origin, unique to the test."""
    return product.site_ids.pop()


@pytest.fixture
def open_browser(tmp_path: Path) -> Iterator[Callable[..., Browser]]:
    browsers: list[Browser] = []

    def open_(**launch: Any) -> Browser:
        profile = tmp_path / f"profile-{len(browsers)}"
        browser = Browser(profile, routes=["https://elsewhere.example/**"], **launch)
        browsers.append(browser)
        return browser

    yield open_
    for browser in browsers:
        browser.close()


def config(site: str, product: Product, **options: Any) -> dict[str, Any]:
    return {"site": site, "collector": product.collector, "pingSeconds": 0, **options}


def assert_exactly_once(events: list[dict[str, Any]]) -> None:
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), f"duplicate event ids: {sorted(ids)}"
    for event in events:
        parse_event(event)  # what the collector wrote is valid against the schema


def collector_posts(browser: Browser, product: Product) -> list[dict[str, Any]]:
    return [r for r in browser("requests") if r["url"].startswith(f"{product.collector}/v1/")]


# --- A consenting visitor browses ---------------------------------------------


def test_consenting_visitor_events_arrive_exactly_once(
    product: Product, web: StaticSite, kafka: KafkaEvents, site: str, open_browser: Callable[..., Browser]
) -> None:
    cfg = config(site, product, consent="granted")
    src = f"{product.collector}/s/t.js"  # served by the collector
    home = web.page(
        f"{site}/home.html",
        cfg,
        script_src=src,
        title="Home",
        calls='tracker("product_view",'
        ' {product_id: "tent-2p", category: "outdoor", price: 199, currency: "EUR"});',
        body=f'<a id="next" href="/{site}/cart.html">cart</a>',
    )
    to_done = f'<a id="next" href="/{site}/done.html">go</a>'
    web.page(f"{site}/cart.html", cfg, script_src=src, title="Cart", body=to_done)
    web.page(
        f"{site}/done.html",
        cfg,
        script_src=src,
        title="Thanks",
        calls='tracker("purchase", {order_id: "o-1", value: 199, currency: "EUR", '
        'items: [{product_id: "tent-2p", price: 199, quantity: 1}]});',
        body="<button id=\"spa\" onclick=\"history.pushState({}, '', 'spa-route')\">spa</button>"
        '<a id="out" href="https://elsewhere.example/partner">partner</a>',
    )
    last = web.page(f"{site}/last.html", cfg, script_src=src, title="Last")

    browser = open_browser()
    browser("goto", url=home)
    # Away before the batch timer fires: the events wait in storage for the next page.
    browser("click", selector="#next", navigates=True)
    browser.wait_queue_empty()
    # Now the collector is known healthy: what is left at exit goes by sendBeacon.
    browser("eval", expr='tracker("add_to_cart", {product_id: "tent-2p", price: 199, quantity: 1}), 1')
    browser("click", selector="#next", navigates=True)
    browser("click", selector="#spa")
    browser("waitFor", expr="location.pathname.endsWith('/spa-route')")
    browser("sleep", ms=100)
    browser("click", selector="#out", navigates=True)
    browser("goto", url=last)
    browser.wait_queue_empty()

    expected = sorted(["page_view"] * 5 + ["product_view", "add_to_cart", "purchase", "link_click"])
    events = kafka.wait_for(site, lambda evs: len(evs) >= len(expected))
    events = kafka.drain(site)
    assert types(events) == expected
    assert_exactly_once(events)

    for event in events:
        assert event["event_id"] == str(uuid.UUID(event["event_id"]))
        assert uuid.UUID(event["event_id"]).version == 4
        assert abs(event["ts"] - time.time() * 1000) < 120_000
    visitors = {e["visitor_id"] for e in events}
    sessions = {e["session_id"] for e in events}
    assert len(visitors) == 1 and len(sessions) == 1
    visitor = visitors.pop()

    cookie = next(c for c in browser("cookies") if c["name"] == "_trk_id")
    assert cookie["value"] == visitor
    assert abs(cookie["expires"] - (time.time() + THIRTEEN_MONTHS_SECONDS)) < 3600
    assert cookie["sameSite"] == "Lax"
    assert browser.storage()["trk:id"] == visitor

    spa = next(e for e in events if e["type"] == "page_view" and e["url"].endswith("/spa-route"))
    assert spa["referrer"].endswith(f"/{site}/done.html")
    assert (
        next(e for e in events if e["type"] == "link_click")["target_url"]
        == "https://elsewhere.example/partner"
    )
    purchase = next(e for e in events if e["type"] == "purchase")
    assert [(i["product_id"], i["price"], i["quantity"]) for i in purchase["items"]] == [("tent-2p", 199, 1)]
    titles = {e["title"] for e in events if e["type"] == "page_view" and not e["url"].endswith("spa-route")}
    assert titles == {"Home", "Cart", "Thanks", "Last"}
    assert browser.page_errors() == []


def test_collector_serves_the_snippet_with_cache_headers(product: Product) -> None:
    response = httpx.get(f"{product.collector}/s/t.js", headers={"accept-encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["content-encoding"] == "gzip"
    assert "max-age=3600" in response.headers["cache-control"]
    assert "tracker" in response.text
    again = httpx.get(f"{product.collector}/s/t.js", headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304


# --- Consent --------------------------------------------------------------------

DNT_SCRIPT = "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'});"
GPC_SCRIPT = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true});"


@pytest.mark.parametrize(
    ("why", "launch", "consent"),
    [
        ("site-denied", {}, "denied"),
        ("do-not-track", {"headers": {"DNT": "1"}, "initScript": DNT_SCRIPT}, "granted"),
        ("global-privacy-control", {"headers": {"Sec-GPC": "1"}, "initScript": GPC_SCRIPT}, "granted"),
    ],
)
def test_refusal_stores_and_sends_nothing(
    product: Product,
    web: StaticSite,
    kafka: KafkaEvents,
    site: str,
    open_browser: Callable[..., Browser],
    why: str,
    launch: dict[str, Any],
    consent: str,
) -> None:
    src = f"{web.origin}/s/t.js"
    browser = open_browser(**launch)
    before = 0
    if why == "site-denied":
        # An earlier visit with consent left an id and a queue behind.
        first = web.page(f"{site}/first.html", config(site, product, consent="granted"), script_src=src)
        browser("goto", url=first)
        browser.wait_queue_empty()
        before = len(kafka.wait_for(site, lambda evs: len(evs) >= 1))
        assert any(c["name"] == "_trk_id" for c in browser("cookies"))
    browser("requests", clear=True)

    page = web.page(
        f"{site}/refused.html",
        config(site, product, consent=consent, offers=product.api, pingSeconds=1),
        script_src=src,
        calls='tracker("product_view", {product_id: "sku-1", category: "shoes"});tracker("search", "boots");',
        body='<div style="height:3000px">tall</div><a id="out" href="https://elsewhere.example/">out</a>',
    )
    browser("goto", url=page)
    browser("wheel", dy=800)
    browser("eval", expr='tracker("identify", "a".repeat(64)), tracker("flush"), 1')
    browser("sleep", ms=1500)  # longer than a batch and a ping interval
    browser("click", selector="#out", navigates=True)
    browser("goto", url=page)
    browser("sleep", ms=500)

    assert collector_posts(browser, product) == []
    assert [c for c in browser("cookies") if c["name"] in ("_trk_id", "trk_vid")] == []
    assert [k for k in browser.storage() if k.startswith("trk:")] == []
    assert len(kafka.drain(site)) == before
    assert browser.page_errors() == []


def test_recorded_consent_overrides_do_not_track(
    product: Product, web: StaticSite, kafka: KafkaEvents, site: str, open_browser: Callable[..., Browser]
) -> None:
    browser = open_browser(headers={"DNT": "1"}, initScript=DNT_SCRIPT)
    page = web.page(
        f"{site}/recorded.html",
        config(site, product, consent="granted", consentRecorded=True),
        script_src=f"{web.origin}/s/t.js",
    )
    browser("goto", url=page)
    browser.wait_queue_empty()
    events = kafka.wait_for(site, lambda evs: len(evs) >= 1)
    assert types(events) == ["page_view"]


def test_consent_pending_then_granted_then_withdrawn(
    product: Product, web: StaticSite, kafka: KafkaEvents, site: str, open_browser: Callable[..., Browser]
) -> None:
    page = web.page(
        f"{site}/pending.html",
        config(site, product, consent="pending"),
        script_src=f"{web.origin}/s/t.js",
        calls='tracker("product_view", {product_id: "sku-9", category: "books"});',
    )
    browser = open_browser()
    browser("goto", url=page)
    browser("sleep", ms=1500)
    assert collector_posts(browser, product) == []
    assert browser.storage() == {}
    assert browser("cookies") == []

    browser("eval", expr='tracker("consent", "granted"), 1')
    browser.wait_queue_empty()
    events = kafka.wait_for(site, lambda evs: len(evs) >= 3)
    assert types(events) == ["consent", "page_view", "product_view"]
    assert next(e for e in events if e["type"] == "consent")["state"] == "granted"
    visitor = events[0]["visitor_id"]
    assert {e["visitor_id"] for e in events} == {visitor}
    assert browser.storage()["trk:id"] == visitor

    browser("eval", expr='tracker("consent", "denied"), tracker("search", "after refusal"), 1')
    browser("waitFor", expr="!document.cookie.includes('_trk_id')")
    assert [k for k in browser.storage() if k.startswith("trk:")] == []
    events = kafka.wait_for(site, lambda evs: len(evs) >= 4)
    withdrawal = [e for e in events if e["type"] == "consent" and e["state"] == "denied"]
    assert len(withdrawal) == 1 and withdrawal[0]["visitor_id"] == visitor
    browser("sleep", ms=1200)
    assert count(kafka.drain(site), "search") == 0


# --- Delivery through outages -------------------------------------------------


def test_collector_down_then_up_loses_nothing_and_sends_nothing_twice(
    product: Product, web: StaticSite, kafka: KafkaEvents, site: str, open_browser: Callable[..., Browser]
) -> None:
    # The site serves the snippet itself, so pages load while the collector is down.
    page = web.page(
        f"{site}/outage.html",
        config(site, product, consent="granted", batchMs=200),
        script_src=f"{web.origin}/s/t.js",
        calls='tracker("product_view", {product_id: "sku-7", category: "garden"});',
    )
    product.stop("collector")
    try:
        browser = open_browser()
        browser("goto", url=page)
        browser("waitFor", expr="(localStorage.getItem('trk:h') || '').startsWith('0:')")
        assert browser.queued() == 2
        browser("reload")  # the queue survives the page, nothing is beaconed into the void
        browser("waitFor", expr=f"({QUEUED})(4)")
    finally:
        product.start("collector")
    # The page retries on its own once the collector answers (backoff of a few seconds here).
    # Reloading while that retry is in flight would be a legitimate duplicate (at-least-once:
    # an unanswered request is sent again; the worker drops it by event id), not what this checks.
    browser.wait_queue_empty(timeout=45_000)
    browser("reload")
    browser.wait_queue_empty()
    events = kafka.wait_for(site, lambda evs: len(evs) >= 6)
    events = kafka.drain(site)
    assert types(events) == ["page_view"] * 3 + ["product_view"] * 3
    assert_exactly_once(events)


def test_503_with_retry_after_then_recovery_without_reload(
    product: Product, web: StaticSite, kafka: KafkaEvents, site: str, open_browser: Callable[..., Browser]
) -> None:
    page = web.page(
        f"{site}/unavailable.html",
        config(site, product, consent="granted", batchMs=200),
        script_src=f"{web.origin}/s/t.js",
        calls='tracker("add_to_cart", {product_id: "sku-3", quantity: 2});',
    )
    # A collector whose Kafka is unreachable answers 503 with Retry-After.
    no_kafka = product.settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    product.stop("collector")
    try:
        product.start("collector", no_kafka, wait_ready=False)
        browser = open_browser()
        browser("goto", url=page)
        browser("waitFor", expr="(localStorage.getItem('trk:h') || '').startsWith('0:')")
        answered = [r for r in collector_posts(browser, product) if r["url"].endswith("/v1/events")]
        assert answered, "the snippet never tried to send"
        assert browser.queued() == 2
    finally:
        product.stop("collector")
        product.start("collector")
    # The same page retries on its own (backoff, at least Retry-After) and delivers.
    browser.wait_queue_empty(timeout=30_000)
    events = kafka.wait_for(site, lambda evs: len(evs) >= 2)
    events = kafka.drain(site)
    assert types(events) == ["add_to_cart", "page_view"]
    assert_exactly_once(events)


def test_tabs_share_the_queue_without_sending_twice(
    product: Product, web: StaticSite, kafka: KafkaEvents, site: str, open_browser: Callable[..., Browser]
) -> None:
    page = web.page(
        f"{site}/tabs.html",
        config(site, product, consent="granted", batchMs=200),
        script_src=f"{web.origin}/s/t.js",
        calls='tracker("product_view", {product_id: "sku-5", category: "toys"});',
    )
    product.stop("collector")
    try:
        browser = open_browser()
        browser("goto", url=page)
        browser("waitFor", expr="(localStorage.getItem('trk:h') || '').startsWith('0:')")
        browser("goto", url="about:blank")  # the tab leaves: its 2 events are orphans now
        tabs = [browser("newPage"), browser("newPage")]
        browser("gotoAll", pages=tabs, url=page)  # two tabs at once, during the outage
        browser("waitFor", page=tabs[0], expr=f"({QUEUED})(6)")
        browser("gotoAll", pages=tabs, url="about:blank")  # both leave: 6 orphans, no tab alive
    finally:
        product.start("collector")
    # Both come back at once: each finds the orphans and races the other to adopt them.
    browser("gotoAll", pages=tabs, url=page)
    for tab in tabs:
        browser.wait_queue_empty(page=tab)
    events = kafka.wait_for(site, lambda evs: len(evs) >= 10)
    browser("sleep", ms=1000)
    events = kafka.drain(site)
    assert types(events) == ["page_view"] * 5 + ["product_view"] * 5
    assert_exactly_once(events)
    # And in the browser: each event got exactly one 202 (failed attempts do not count).
    delivered = [
        e["event_id"]
        for r in collector_posts(browser, product)
        if r["url"].endswith("/v1/events") and r["status"] == 202
        for e in json.loads(r["body"])["events"]
    ]
    assert sorted(delivered) == sorted(e["event_id"] for e in events), "an event was delivered twice"


# --- Offers ---------------------------------------------------------------------


def test_offer_slot_is_filled_and_its_impression_and_click_arrive(
    product: Product, web: StaticSite, kafka: KafkaEvents, site: str, open_browser: Callable[..., Browser]
) -> None:
    page = web.page(
        f"{site}/offers.html",
        config(site, product, consent="granted", offers=product.api),
        script_src=f"{web.origin}/s/t.js",
        body='<div style="height:2500px">content</div>'
        '<div id="slot" data-offer-slot="home-hero">fallback</div><div style="height:300px"></div>',
    )
    browser = open_browser()
    browser("goto", url=page)
    browser("waitFor", expr="document.getElementById('slot').dataset.offerState === 'filled'")
    slot = browser(
        "eval",
        expr="(() => { const s = document.getElementById('slot'); const a = s.querySelector('a.trk-offer');"
        " return {decision: s.dataset.decisionId, offer: s.dataset.offerId, href: a.href,"
        " title: a.querySelector('.trk-offer-title').textContent, spans: a.children.length}; })()",
    )
    assert slot["decision"] and slot["offer"] and slot["title"]
    browser.wait_queue_empty()
    browser("sleep", ms=800)
    assert count(kafka.drain(site), "offer_impression") == 0  # below the fold: not seen yet

    browser("eval", expr="document.getElementById('slot').scrollIntoView(), 1")
    events = kafka.wait_for(site, lambda evs: count(evs, "offer_impression") >= 1)
    browser("click", selector="#slot a", navigates=True)  # to the offer's link, off the snippet's pages
    events = kafka.wait_for(site, lambda evs: count(evs, "offer_click") >= 1)
    events = kafka.drain(site)
    for kind in ("offer_impression", "offer_click"):
        [event] = [e for e in events if e["type"] == kind]
        got = (event["decision_id"], event["offer_id"], event["slot"])
        assert got == (slot["decision"], slot["offer"], "home-hero")
    assert_exactly_once(events)


def test_offer_text_is_never_markup(
    product: Product, web: StaticSite, site: str, open_browser: Callable[..., Browser]
) -> None:
    page = web.page(
        f"{site}/xss.html",
        config(site, product, consent="pending", offers=product.api),
        script_src=f"{web.origin}/s/t.js",
        body=f'<div id="slot" data-offer-slot="{XSS_SLOT}"></div>',
    )
    browser = open_browser()
    browser("goto", url=page)
    browser("waitFor", expr="document.getElementById('slot').dataset.offerState === 'filled'")
    rendered = browser(
        "eval",
        expr="(() => { const a = document.querySelector('#slot a'); return {"
        " title: a.querySelector('.trk-offer-title').textContent,"
        " cta: a.querySelector('.trk-offer-cta').textContent,"
        " imgs: document.querySelectorAll('#slot img').length,"
        " scripts: document.querySelectorAll('#slot script').length,"
        " pwned: window.__pwned === undefined ? null : window.__pwned, href: a.href}; })()",
    )
    assert rendered == {
        "title": XSS_TITLE,
        "cta": "<b>Go</b>",
        "imgs": 0,
        "scripts": 0,
        "pwned": None,
        "href": "https://elsewhere.example/deal?a=1&b=%3C2%3E",
    }
    # Without consent the request carried a throwaway id, never a stored one.
    [offer_request] = [r for r in browser("requests") if r["url"].startswith(f"{product.api}/v1/offers")]
    assert "visitor=anon-" in offer_request["url"]
    assert browser.storage() == {}


def test_page_without_slot_asks_for_no_offer(
    product: Product, web: StaticSite, site: str, open_browser: Callable[..., Browser]
) -> None:
    page = web.page(
        f"{site}/noslot.html",
        config(site, product, consent="granted", offers=product.api),
        script_src=f"{web.origin}/s/t.js",
    )
    browser = open_browser()
    browser("goto", url=page)
    browser.wait_queue_empty()
    assert [r for r in browser("requests") if r["url"].startswith(product.api)] == []


# --- Engagement, identity, robustness -----------------------------------------


def test_page_pings_carry_scroll_depth_and_engaged_time(
    product: Product, web: StaticSite, kafka: KafkaEvents, site: str, open_browser: Callable[..., Browser]
) -> None:
    page = web.page(
        f"{site}/long.html",
        config(site, product, consent="granted", pingSeconds=1, batchMs=200),
        script_src=f"{web.origin}/s/t.js",
        body='<div style="height:4000px">long read</div>',
    )
    browser = open_browser()
    browser("goto", url=page)
    browser("wheel", dy=1500)
    browser("sleep", ms=1200)
    browser("wheel", dy=1500)
    events = kafka.wait_for(site, lambda evs: count(evs, "page_ping") >= 2)
    pings = sorted((e for e in events if e["type"] == "page_ping"), key=lambda e: e["ts"])
    assert len(pings) >= 2
    assert 0 < pings[0]["scroll_depth"] <= pings[-1]["scroll_depth"] <= 100
    assert pings[0]["engaged_ms"] >= 1000 and pings[-1]["engaged_ms"] > pings[0]["engaged_ms"]


def test_collector_cookie_brings_the_id_back_after_storage_is_wiped(
    product: Product, web: StaticSite, kafka: KafkaEvents, site: str, open_browser: Callable[..., Browser]
) -> None:
    page = web.page(
        f"{site}/itp.html",
        config(site, product, consent="granted", serverCookie=True),
        script_src=f"{web.origin}/s/t.js",
    )
    browser = open_browser()
    browser("goto", url=page)
    browser.wait_queue_empty()
    [first] = kafka.wait_for(site, lambda evs: len(evs) >= 1)
    server_cookie = next(c for c in browser("cookies") if c["name"] == "trk_vid")
    assert server_cookie["value"] == first["visitor_id"] and server_cookie["httpOnly"]

    # What Safari does to script-written storage after 7 days.
    browser("clearCookies", name="_trk_id")
    browser("eval", expr="localStorage.clear(), 1")
    browser("reload")
    browser.wait_queue_empty()
    events = kafka.wait_for(site, lambda evs: len(evs) >= 2)
    assert [e["visitor_id"] for e in events] == [first["visitor_id"]] * 2

    browser("eval", expr='tracker("consent", "denied"), 1')
    deadline = time.monotonic() + 10
    while any(c["name"] == "trk_vid" for c in browser("cookies")):
        assert time.monotonic() < deadline, "the collector's visitor cookie was not deleted on refusal"
        time.sleep(0.2)


def test_host_page_never_sees_an_exception(
    product: Product, web: StaticSite, kafka: KafkaEvents, site: str, open_browser: Callable[..., Browser]
) -> None:
    # Storage that throws (as with cookies blocked): the page still works and events still go.
    no_storage = (
        "Object.defineProperty(window, 'localStorage',"
        " {get() { throw new DOMException('denied', 'SecurityError'); }});"
    )
    page = web.page(
        f"{site}/hostile.html",
        config(site, product, consent="granted", batchMs=200, bogusOption=1),
        script_src=f"{web.origin}/s/t.js",
        calls='tracker("no_such_call", 1); tracker("product_view", {}); tracker("purchase", null);'
        'tracker("init", {site: "other"}); tracker("identify", "jane@example.com");'
        'tracker("search", {query: "tents"}); window.afterCalls = true;',
    )
    browser = open_browser(initScript=no_storage)
    browser("goto", url=page)
    # Calls after the real script replaced the stub: still nothing thrown.
    after_load = 'tracker(), tracker(null), tracker("no_such_call"), tracker("consent", "maybe"), 1'
    assert browser("eval", expr=after_load) == 1
    events = kafka.wait_for(site, lambda evs: len(evs) >= 2)
    assert types(events) == ["page_view", "search"]
    assert browser("eval", expr="window.afterCalls === true")
    assert browser.page_errors() == []
    warnings = [m["text"] for m in browser("errors")["console"] if m["type"] == "warning"]
    # Codes, not sentences: js-snippet/README.md lists them.
    for expected in (
        "[tracker] E8 no_such_call",
        "[tracker] E11 product_view.product_id",
        "[tracker] E3",
        "[tracker] E12 identify.customer_hash",
        "[tracker] E6 bogusOption",
    ):
        assert any(w == expected or w.startswith(f"{expected} ") for w in warnings), (expected, warnings)


def test_every_site_call_validates_against_the_schema(
    product: Product, web: StaticSite, kafka: KafkaEvents, site: str, open_browser: Callable[..., Browser]
) -> None:
    calls = {
        "product_view": '{product_id: "p-1", category: "shoes", price: 59.9, currency: "eur"}',
        "add_to_cart": '{product_id: "p-1", category: "shoes", price: 59.9, quantity: 2, currency: "EUR"}',
        "remove_from_cart": '{product_id: "p-1", quantity: 1}',
        "purchase": '{order_id: "o-9", value: 119.8, currency: "EUR",'
        ' items: [{product_id: "p-1", quantity: 2}]}',
        "search": '"red shoes"',
        "identify": f'"{"ab" * 32}"',
        "event": '"newsletter.signup", {source: "footer", step: 2, ok: true}',
    }
    script = "".join(f'tracker("{name}", {args});' for name, args in calls.items())
    page = web.page(
        f"{site}/calls.html",
        config(site, product, consent="granted", batchMs=200),
        script_src=f"{web.origin}/s/t.js",
        calls=script,
    )
    browser = open_browser()
    browser("goto", url=page)
    events = kafka.wait_for(site, lambda evs: len(evs) >= 8)
    expected = ["page_view", "product_view", "add_to_cart", "remove_from_cart", "purchase", "search"]
    assert types(events) == sorted([*expected, "identify", "custom"])
    assert_exactly_once(events)
    custom = next(e for e in events if e["type"] == "custom")
    assert custom["name"] == "newsletter.signup"
    assert custom["properties"] == {"source": "footer", "step": 2, "ok": True}
    assert json.dumps(events)  # plain JSON all the way
