"""The offer API deciding with the policy (``tracker.models.policy.decide``): cold start, holdout,
frequency caps, published click-model snapshots, the page parameters and the explain endpoint,
against the session's real Redis and Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis
from serve_support import (
    HOME,
    metric_value,
    offer_params,
    running,
    small_catalogue,
    store_caps,
    store_profile,
    store_raw,
    visitor,
)

from tracker import keys
from tracker.models.catalogue import parse_catalogue
from tracker.models.features import context_from_profile
from tracker.models.learner import ClickModel, encode_snapshot
from tracker.models.policy import decide
from tracker.models.profile import Profile, apply_event
from tracker.models.slot_scores import AT_ONCE_FROM
from tracker.schema import parse_event
from tracker.serve import create_app
from tracker.serve.offers import Policy
from tracker.settings import Settings

pytestmark = pytest.mark.integration

TOKEN = "explain-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
NO_EXPLORATION = {"explore_epsilon_start": 0.0, "explore_epsilon_min": 0.0, "explore_epsilon_restart": 0.0}


def test_the_untrained_model_personalises_by_interest() -> None:
    """Cold start (no snapshot published): the priors alone put the visitor's interest first."""
    now = int(time.time() * 1000)
    profile = Profile.new("shop", "visitor-0001")
    for n, category in enumerate(["shoes"] * 4 + ["kitchen"]):
        event = {"event_id": str(uuid.uuid4()), "type": "product_view", "ts": now, "site_id": "shop",
                 "visitor_id": "visitor-0001", "product_id": f"sku-{n}", "category": category}  # fmt: skip
        apply_event(profile, parse_event(event), received_at=now, half_life_seconds=86400.0, dedupe_window=8)
    ctx = context_from_profile(profile, now_ms=now, half_life_seconds=86400.0)
    policy = Policy.from_settings(Settings(environment="test"))
    decision = decide(
        small_catalogue(),
        HOME,
        ctx,
        model=ClickModel(),
        rng=policy.rng,
        site_id="shop",
        visitor_id="visitor-0001",
        config=policy.cold_config,
        now_ms=now,
    )
    assert (decision.offer.id if decision.offer else None, decision.reason) == ("run-shoes", "interest:shoes")
    assert decision.personalised and decision.propensity == 1.0 and not decision.explored


async def test_a_page_category_steers_even_a_stranger(settings: Settings, site_id: str) -> None:
    params = offer_params(site_id, visitor(site_id)) | {
        "category": "shoes",
        "page": "/c/shoes",
        "device": "mobile",
    }
    async with running(create_app(settings, catalogue=small_catalogue())) as client:
        body = (await client.get("/v1/offers", params=params)).json()
        bad = await client.get("/v1/offers", params=params | {"device": "fridge"})
    assert (body["offer"]["id"], body["reason"], body["personalised"]) == ("run-shoes", "page:shoes", False)
    assert bad.status_code == 422
    assert "query parameter 'device' is invalid" in bad.json()["detail"]


async def test_holdout_visitors_get_the_default(settings: Settings, site_id: str) -> None:
    everyone_held_out = settings.model_copy(update={"holdout_percent": 100.0})
    fan = visitor()
    await store_profile(settings, site_id, fan, {"shoes": 5})
    async with running(create_app(everyone_held_out, catalogue=small_catalogue())) as client:
        body = (await client.get("/v1/offers", params=offer_params(site_id, fan))).json()
        text = (await client.get("/metrics")).text
    assert body["offer"]["id"] == "welcome"
    assert (body["personalised"], body["reason"], body["holdout"], body["fallback"]) == (
        False,
        "holdout",
        True,
        False,
    )
    assert metric_value(text, "tracker_offer_requests_total", outcome="holdout") == 1
    assert metric_value(text, "tracker_offer_requests_total", outcome="personalised") == 0


async def test_a_session_cap_stops_the_same_offer_twice(settings: Settings, site_id: str) -> None:
    """The API reads the counts the stream worker keeps (tests/test_streams_rewards.py writes them
    through a real worker) and never writes them itself."""
    data = small_catalogue().model_dump(mode="json", exclude_defaults=True)
    for offer in data["offers"]:
        if offer["id"] == "run-shoes":
            offer["caps"] = {"per_session": 1}
    capped = parse_catalogue(data)
    fan, other = visitor(site_id), visitor(site_id)
    for vid in (fan, other):
        await store_profile(settings, site_id, vid, {"shoes": 5})
    await store_caps(settings, site_id, fan, {"run-shoes": 1})
    await store_caps(settings, site_id, other, {"knives": 3})
    app = create_app(settings, catalogue=capped)
    async with running(app) as client:
        capped_out = (await client.get("/v1/offers", params=offer_params(site_id, fan))).json()
        not_capped = (await client.get("/v1/offers", params=offer_params(site_id, other))).json()
    assert capped_out["offer"]["id"] != "run-shoes"
    assert not_capped["offer"]["id"] == "run-shoes", "another offer's count does not bind"
    redis = Redis.from_url(settings.redis_url)
    try:
        stranger = visitor(site_id)
        async with running(create_app(settings, catalogue=capped)) as client:
            await client.get("/v1/offers", params=offer_params(site_id, stranger))
        assert await redis.exists(keys.caps(site_id, stranger)) == 0, "the API only reads"
    finally:
        await redis.aclose()


async def test_unreadable_caps_are_counted_and_decided_without(settings: Settings, site_id: str) -> None:
    fan = visitor(site_id)
    await store_profile(settings, site_id, fan, {"shoes": 5})
    await store_raw(settings, keys.caps(site_id, fan), b'{"v": 999}')
    app = create_app(settings, catalogue=small_catalogue())
    async with running(app) as client:
        body = (await client.get("/v1/offers", params=offer_params(site_id, fan))).json()
        text = (await client.get("/metrics")).text
    assert (body["offer"]["id"], body["fallback"]) == ("run-shoes", False), "decided without caps"
    assert metric_value(text, "tracker_offer_caps_unreadable_total") == 1


def _trained_to_like_knives() -> ClickModel:
    model = ClickModel()
    for _ in range(300):
        model.learn_one({"knives": 1.0}, True, offer_id="knives")
        model.learn_one({"welcome": 1.0}, False, offer_id="welcome")
    return model


async def _publish(settings: Settings, app_id: str, version: str, raw: bytes) -> None:
    redis = Redis.from_url(settings.redis_url)
    try:
        await redis.set(keys.click_model(app_id, version), raw, ex=600)
        await redis.set(keys.click_model_current(app_id), version, ex=600)
    finally:
        await redis.aclose()


async def test_a_published_model_is_used_and_logged(settings: Settings, site_id: str) -> None:
    app_id = f"policy-{uuid.uuid4().hex[:8]}"
    own = settings.model_copy(update={"worker_app_id": app_id, **NO_EXPLORATION})
    model = _trained_to_like_knives()
    consumer = AIOKafkaConsumer(
        settings.topic_decisions,
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while not consumer.assignment():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)

        app = create_app(own, catalogue=small_catalogue())
        async with running(app) as client:
            stranger = offer_params(site_id, visitor(site_id))
            cold = (await client.get("/v1/offers", params=stranger)).json()
            await _publish(settings, app_id, model.version, encode_snapshot(model.to_snapshot()))
            assert await app.state.model.refresh()
            learned = (await client.get("/v1/offers", params=stranger)).json()
            record = await _wait_for_decision(consumer, learned["decision_id"], wait_seconds=30)

            # A broken snapshot keeps the model loaded and is counted.
            await _publish(settings, app_id, "0000000001-broken", b'{"schema": "tracker.click_model"')
            assert not await app.state.model.refresh()
            still = (await client.get("/v1/offers", params=stranger)).json()
            text = (await client.get("/metrics")).text
    finally:
        await consumer.stop()

    assert (cold["offer"]["id"], cold["reason"], cold["model_version"]) == (
        "welcome",
        "no_profile",
        ClickModel().version,
    )
    # Trained: what strangers click is learned popularity, no longer the catalogue's default.
    assert (learned["offer"]["id"], learned["reason"], learned["model_version"]) == (
        "knives",
        "popular",
        model.version,
    )
    assert record["model_version"] == model.version
    assert record["features"]["knives"] == 1.0 and record["propensity"] == 1.0
    assert still["model_version"] == model.version
    assert metric_value(text, "tracker_offer_model_info", version=model.version) == 1
    assert metric_value(text, "tracker_offer_model_updates") == model.updates
    assert metric_value(text, "tracker_offer_model_reload_errors_total") == 1


async def test_a_snapshot_published_before_start_is_used_at_once(settings: Settings, site_id: str) -> None:
    app_id = f"policy-{uuid.uuid4().hex[:8]}"
    model = _trained_to_like_knives()
    await _publish(settings, app_id, model.version, encode_snapshot(model.to_snapshot()))
    own = settings.model_copy(update={"worker_app_id": app_id, **NO_EXPLORATION})
    async with running(create_app(own, catalogue=small_catalogue())) as client:
        body = (await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id)))).json()
    assert (body["offer"]["id"], body["model_version"]) == ("knives", model.version)


async def _wait_for_decision(
    consumer: AIOKafkaConsumer, decision_id: str, *, wait_seconds: float
) -> dict[str, Any]:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        for messages in (await consumer.getmany(timeout_ms=500)).values():
            for message in messages:
                value = orjson.loads(message.value)
                if value.get("decision_id") == decision_id:
                    return value
    raise AssertionError(f"decision {decision_id} did not reach Kafka within {wait_seconds}s")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}])
async def test_explain_needs_the_admin_token(
    settings: Settings, site_id: str, headers: dict[str, str]
) -> None:
    with_token = settings.model_copy(update={"admin_token": TOKEN})
    async with running(create_app(with_token, catalogue=small_catalogue())) as client:
        response = await client.get(
            "/v1/offers/explain", params=offer_params(site_id, visitor()), headers=headers
        )
    assert response.status_code == 401


async def test_explain_lists_candidates_and_logs_nothing(settings: Settings, site_id: str) -> None:
    with_token = settings.model_copy(update={"admin_token": TOKEN})
    fan = visitor(site_id)
    await store_profile(settings, site_id, fan, {"shoes": 3})
    app = create_app(with_token, catalogue=small_catalogue())
    async with running(app) as client:
        response = await client.get("/v1/offers/explain", params=offer_params(site_id, fan), headers=ADMIN)
        text = (await client.get("/metrics")).text
        queued = app.state.decisions.queued
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (body["offer_id"], body["reason"], body["fallback"], body["visitor_id"]) == (
        "run-shoes",
        "interest:shoes",
        False,
        fan,
    )
    candidates = {c["offer_id"]: c for c in body["candidates"]}
    assert set(candidates) == {"welcome", "run-shoes", "knives"}
    assert all(c["p_click"] is not None and c["score"] is not None for c in candidates.values())
    assert candidates["run-shoes"]["probability"] == 1.0
    assert candidates["run-shoes"]["contributions"][0][0] == "match=interest"
    assert body["context"]["interests"]["shoes"] > 0
    # Nothing served: no decision logged (so the worker counts no impression), no outcome counted.
    assert queued == 0 and metric_value(text, "tracker_offer_decisions_sent_total") == 0
    assert (
        sum(
            metric_value(text, "tracker_offer_requests_total", outcome=o)
            for o in ("personalised", "holdout", "default", "fallback", "empty")
        )
        == 0
    )


async def test_a_large_slot_is_scored_at_once(settings: Settings, site_id: str) -> None:
    # AT_ONCE_FROM offers or more: the API scores the slot with one SlotScorer per model, and the
    # visitor still gets the offer of their interest (the same decision as one by one:
    # tests/test_slot_scores.py).
    categories = ["shoes", "kitchen", "books", "garden", "toys"]
    offers = [{"id": "welcome", "slots": [HOME], "title": "Welcome", "link": "/", "default": True}]
    offers += [
        {
            "id": f"offer-{n:02d}",
            "slots": [HOME],
            "categories": [categories[n % 5]],
            "title": "O",
            "link": "/",
        }
        for n in range(AT_ONCE_FROM + 4)
    ]
    catalogue = parse_catalogue({"offers": offers})
    fan = visitor(site_id)
    await store_profile(settings, site_id, fan, {"garden": 6})
    app = create_app(settings.model_copy(update=NO_EXPLORATION), catalogue=catalogue)
    async with running(app) as client:
        body = (await client.get("/v1/offers", params=offer_params(site_id, fan))).json()
        model = app.state.model.value
    built = [scorer for _, scorer in app.state.policy.scorers._by_offers.values()]
    assert body["reason"] == "interest:garden" and body["personalised"]
    assert catalogue.get(body["offer"]["id"]).categories == ["garden"]  # type: ignore[union-attr]
    assert [(s.model, len(s.offers)) for s in built] == [(model, AT_ONCE_FROM + 5)], (
        "one scorer, for this slot"
    )
