"""Helpers shared by the offer API's tests: a small catalogue, the app in-process, profiles."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tracker import keys
from tracker.models.caps import ImpressionCounts
from tracker.models.catalogue import Catalogue, parse_catalogue
from tracker.models.holdout import in_holdout
from tracker.models.profile import Profile, apply_event
from tracker.schema import parse_event
from tracker.settings import Settings

HOME = "home-hero"
# The holdout group of default settings (what the `settings` fixture uses).
HOLDOUT_PERCENT: float = Settings.model_fields["holdout_percent"].default
HOLDOUT_SALT: str = Settings.model_fields["holdout_salt"].default


def small_catalogue() -> Catalogue:
    return parse_catalogue(
        {
            "offers": [
                {"id": "welcome", "slots": [HOME], "title": "Welcome", "link": "/", "default": True},
                {
                    "id": "run-shoes",
                    "slots": [HOME],
                    "categories": ["shoes"],
                    "title": "Running shoes",
                    "body": "20% off",
                    "image": "/static/offers/run-shoes.svg",
                    "link": "/c/shoes",
                    "cta": "Shop shoes",
                    "margin": 0.1,
                },
                {
                    "id": "knives",
                    "slots": [HOME],
                    "categories": ["kitchen"],
                    "title": "Knives",
                    "link": "/k",
                    "margin": 0.9,
                },
            ]
        }
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan started, and a client calling it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://offer-api") as client:
            yield client


def visitor(site_id: str | None = None, *, holdout: bool = False) -> str:
    """A fresh visitor id. With ``site_id``: one outside the default holdout group of that site
    (or inside it with ``holdout=True``), so that a test of what the policy serves does not get
    the control group's default by chance."""
    while True:
        vid = f"v-{uuid.uuid4().hex[:16]}"
        if site_id is None or in_holdout(site_id, vid, percent=HOLDOUT_PERCENT, salt=HOLDOUT_SALT) == holdout:
            return vid


async def store_profile(
    settings: Settings, site_id: str, visitor_id: str, category_views: dict[str, int]
) -> None:
    """Fold product views into a fresh profile, as the stream worker would, and store it."""
    profile = Profile.new(site_id, visitor_id)
    now = int(time.time() * 1000)
    for category, views in category_views.items():
        for n in range(views):
            event = parse_event(
                {
                    "event_id": str(uuid.uuid4()),
                    "type": "product_view",
                    "ts": now,
                    "site_id": site_id,
                    "visitor_id": visitor_id,
                    "product_id": f"sku-{category}-{n}",
                    "category": category,
                }
            )
            apply_event(
                profile,
                event,
                received_at=now,
                half_life_seconds=settings.interest_half_life_seconds,
                dedupe_window=settings.dedupe_window,
            )
    await store_raw(settings, keys.profile(site_id, visitor_id), orjson.dumps(profile.to_dict()))


async def store_raw(settings: Settings, key: str, value: bytes) -> None:
    redis = Redis.from_url(settings.redis_url)
    try:
        await redis.set(key, value, ex=600)
    finally:
        await redis.aclose()


async def store_caps(settings: Settings, site_id: str, visitor_id: str, served: dict[str, int]) -> None:
    """Count offers served (offer -> times, now; the session by time) and store the counts, as
    the stream worker does for each decision."""
    counts = ImpressionCounts()
    now = int(time.time() * 1000)
    for offer_id, times in served.items():
        for _ in range(times):
            counts.record(offer_id, at_ms=now)
    await store_raw(settings, keys.caps(site_id, visitor_id), orjson.dumps(counts.to_dict()))


def offer_params(site_id: str, visitor_id: str, slot: str = HOME) -> dict[str, str]:
    return {"site": site_id, "visitor": visitor_id, "slot": slot}


def metric_value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name}{labels} in /metrics")
