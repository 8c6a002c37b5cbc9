"""The whole pipeline as an operator runs it: collector, worker and offer API as real
processes (``python -m tracker ...``) on the session's real Kafka and Redis.

A visitor who keeps viewing one category must, within a bounded wait, be offered
something for that category, while a fresh visitor still gets the default.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from tracker import keys
from tracker.devstack.services import SERVICES, running_services
from tracker.models.catalogue import load_catalogue
from tracker.models.holdout import in_holdout
from tracker.settings import Settings

pytestmark = pytest.mark.integration

SLOT = "home-hero"


@pytest.fixture(scope="module")
def product(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    # Each test sends for its own random site id, registered nowhere.
    settings = stack.service_settings("e2e", allow_unregistered_sites=True)
    log_dir: Path = tmp_path_factory.mktemp("e2e-logs")
    with running_services(SERVICES, settings, log_dir, timeout=90):
        yield settings


def _event(site: str, visitor: str, category: str, n: int) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "product_view",
        "ts": int(time.time() * 1000),
        "site_id": site,
        "visitor_id": visitor,
        "url": f"https://shop.example/p/{category}-{n}",
        "product_id": f"{category}-{n}",
        "category": category,
    }


def _offer(settings: Settings, site: str, visitor: str) -> dict:
    response = httpx.get(
        f"http://{settings.api_host}:{settings.api_port}/v1/offers",
        params={"site": site, "visitor": visitor, "slot": SLOT},
        timeout=5,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _not_held_out(settings: Settings, site: str) -> str:
    while True:
        visitor = f"v-{uuid.uuid4().hex[:12]}"
        if not in_holdout(site, visitor, percent=settings.holdout_percent, salt=settings.holdout_salt):
            return visitor


def test_offer_follows_the_category_a_visitor_browses(product: Settings, site_id: str) -> None:
    catalogue = load_catalogue(product.catalogue_path)
    category = "shoes"
    fitting = {o.id for o in catalogue.offers_for_slot(SLOT) if category in o.categories}
    assert fitting, "the example catalogue must target shoes on the home page"

    # Outside the holdout group (TRACKER_HOLDOUT_PERCENT of visitors always get the default).
    visitor, stranger = _not_held_out(product, site_id), _not_held_out(product, site_id)
    before = _offer(product, site_id, visitor)
    assert before["personalised"] is False
    assert before["offer"]["id"] not in fitting

    batch = {"events": [_event(site_id, visitor, category, n) for n in range(5)]}
    response = httpx.post(f"http://{product.collector_host}:{product.collector_port}/v1/events", json=batch)
    assert response.status_code == 202, response.text

    deadline = time.monotonic() + 60
    offer = before
    while time.monotonic() < deadline:
        offer = _offer(product, site_id, visitor)
        if offer["personalised"]:
            break
        time.sleep(0.2)
    assert offer["personalised"] is True, f"no personalised offer within 60s: {offer}"
    assert offer["offer"]["id"] in fitting

    fresh = _offer(product, site_id, stranger)
    assert fresh["personalised"] is False
    assert fresh["offer"]["id"] == before["offer"]["id"]


def test_redelivered_events_do_not_count_twice(product: Settings, site_id: str) -> None:
    """The same batch sent twice (a client retry) leaves the profile as if sent once."""
    visitor = f"v-{uuid.uuid4().hex[:12]}"
    batch = {"events": [_event(site_id, visitor, "books", n) for n in range(3)]}
    url = f"http://{product.collector_host}:{product.collector_port}/v1/events"
    marker = {"events": [_event(site_id, visitor, "garden", 99)]}
    for body in (batch, batch, marker):
        assert httpx.post(url, json=body).status_code == 202

    client = redis.Redis.from_url(product.redis_url)
    deadline = time.monotonic() + 60
    profile: dict = {}
    while time.monotonic() < deadline:
        raw = client.get(keys.profile(site_id, visitor))
        profile = orjson.loads(raw) if raw else {}
        # The marker is sent last on the same partition: once it is in, so is everything before it.
        if profile.get("counts", {}).get("product_view", 0) >= 4:
            break
        time.sleep(0.2)
    client.close()
    assert profile.get("counts") == {"product_view": 4}, profile
