"""The demo shop in a real Chromium, on the whole running product (issue #8's tests).

The worker, collector, offer API and shop run as processes (as ``tracker up``
runs them) on the session's real Kafka and Redis; Debian's Chromium visits the
shop like a person would.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from snippet_support import Browser

from tracker import keys
from tracker.devstack.process import free_port
from tracker.devstack.services import ALL_SERVICES, running_services
from tracker.models.catalogue import load_catalogue
from tracker.settings import Settings, SiteConfig

pytestmark = pytest.mark.integration

CATEGORY = "garden"
BROWSING = ["/c/garden", "/p/garden-raised-bed", "/p/garden-seed-kit", "/p/garden-pruning-shears"]


@pytest.fixture(scope="module")
def shop(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    shop_port = free_port()
    site = f"shop-{uuid.uuid4().hex[:8]}"
    settings = stack.service_settings(
        "shop",
        shop_port=shop_port,
        shop_site_id=site,
        sites=(SiteConfig(id=site, origins=[f"http://127.0.0.1:{shop_port}"]),),
        access_signing_key=uuid.uuid4().hex,
        # The browser's visitor id is random: 1 in 20 would be in the default 5 % holdout and
        # rightly get the default banner. The holdout has tests of its own (test_serve_policy).
        holdout_percent=0,
    )
    log_dir: Path = tmp_path_factory.mktemp("shop-logs")
    with running_services(ALL_SERVICES, settings, log_dir, timeout=90):
        yield settings


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


def _url(settings: Settings, path: str) -> str:
    return f"http://{settings.shop_host}:{settings.shop_port}{path}"


def _browse_as_consenting_visitor(browser: Browser, shop: Settings) -> str:
    browser("goto", page=0, url=_url(shop, "/"))
    browser("waitFor", page=0, expr="!document.getElementById('consent-banner').hidden")
    browser("click", page=0, selector="#consent-accept")
    for path in BROWSING:
        browser("goto", page=0, url=_url(shop, path))
    browser.wait_queue_empty()
    return browser("eval", page=0, expr="localStorage.getItem('trk:vid') || document.cookie")


def test_consenting_visitor_sees_an_offer_for_the_category_they_browse(
    browser: Browser, shop: Settings
) -> None:
    fitting = {o.id for o in load_catalogue(shop.catalogue_path).offers if CATEGORY in o.categories}
    _browse_as_consenting_visitor(browser, shop)
    offer_id = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        browser("goto", page=0, url=_url(shop, "/"))
        browser(
            "waitFor", page=0, expr="document.querySelector('[data-offer-slot=home-hero]').dataset.offerState"
        )
        offer_id = browser(
            "eval", page=0, expr="document.querySelector('[data-offer-slot=home-hero]').dataset.offerId"
        )
        if offer_id in fitting:
            break
        time.sleep(0.3)
    assert offer_id in fitting, f"the home banner is {offer_id!r}, not one of {sorted(fitting)}"
    assert browser.page_errors() == []


def test_declining_consent_stores_and_sends_nothing_identifying(browser: Browser, shop: Settings) -> None:
    browser("goto", page=0, url=_url(shop, "/"))
    browser("waitFor", page=0, expr="!document.getElementById('consent-banner').hidden")
    browser("click", page=0, selector="#consent-decline")
    for path in BROWSING:
        browser("goto", page=0, url=_url(shop, path))
    browser("click", page=0, selector="#add-to-cart")
    browser("sleep", ms=1500)

    cookies = {c["name"] for c in browser("cookies")}
    assert "_trk_id" not in cookies
    assert not [k for k in browser.storage() if k.startswith("trk:")]
    collector = f"http://{shop.collector_host}:{shop.collector_port}"
    sent = [r for r in browser("requests", clear=False) if r["url"].startswith(f"{collector}/v1/events")]
    assert sent == [], f"events went to the collector without consent: {sent}"
    offers = [r["url"] for r in browser("requests", clear=False) if "/v1/offers" in r["url"]]
    assert offers, "the slots should still get non-personalised banners"
    assert all("visitor=anon-" in url for url in offers), offers


def test_visitor_sees_their_own_data_and_erases_it(browser: Browser, shop: Settings) -> None:
    _browse_as_consenting_visitor(browser, shop)
    visitor = next(c["value"] for c in browser("cookies") if c["name"] == "_trk_id")
    client = redis.Redis.from_url(shop.redis_url)
    try:
        deadline = time.monotonic() + 60
        while not client.exists(keys.profile(shop.shop_site_id, visitor)) and time.monotonic() < deadline:
            time.sleep(0.2)

        browser("goto", page=0, url=_url(shop, "/me"))
        assert browser("eval", page=0, expr="document.getElementById('me-visitor').textContent") == visitor
        interests = browser("eval", page=0, expr="document.getElementById('me-interests').textContent")
        assert CATEGORY in interests

        browser("click", page=0, selector="#erase", navigates=True)
        browser(
            "waitFor",
            page=0,
            expr="document.getElementById('erase-status').dataset.done === 'true'",
            timeout=60_000,
        )
        assert not client.exists(keys.profile(shop.shop_site_id, visitor))

        browser("goto", page=0, url=_url(shop, "/me"))
        assert browser("eval", page=0, expr="!!document.getElementById('me-nothing')")
        assert "_trk_id" not in {c["name"] for c in browser("cookies")}
    finally:
        client.close()
