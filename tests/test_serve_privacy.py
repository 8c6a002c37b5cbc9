"""Privacy endpoints of the offer API: erasure (admin token, Kafka-acknowledged), erasure
status, and a visitor reading their own profile (signed link or own cookie); rate limits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis
from serve_support import (
    closed_port,
    metric_value,
    running,
    small_catalogue,
    store_caps,
    store_profile,
    visitor,
)

from tracker import keys
from tracker.schema import ErasureRequest
from tracker.serve import create_app
from tracker.serve.access import sign_access
from tracker.settings import Settings

pytestmark = pytest.mark.integration

TOKEN = "a-long-random-admin-token-for-tests"
KEY = "signing-key-for-tests-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def privacy_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin_token": TOKEN, "access_signing_key": KEY})


@asynccontextmanager
async def erasures_from_now(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer of every partition of ``erasures``, positioned at the current end."""
    consumer = AIOKafkaConsumer(
        settings.topic_erasures,
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while not consumer.assignment():  # noqa: ASYNC110 - aiokafka has no "assigned" awaitable
                await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)
        yield consumer
    finally:
        await consumer.stop()


async def find_record(consumer: AIOKafkaConsumer, request_id: str, seconds: float = 30) -> tuple[bytes, dict]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for messages in (await consumer.getmany(timeout_ms=500)).values():
            for message in messages:
                value = orjson.loads(message.value)
                if value.get("request_id") == request_id:
                    return message.key, value
    raise AssertionError(f"erasure {request_id} not on the topic within {seconds}s")


# --- erasure ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
    ],
    ids=["none", "wrong", "not-bearer", "empty"],
)
async def test_erase_needs_the_admin_token(privacy_settings: Settings, headers: dict[str, str]) -> None:
    async with running(create_app(privacy_settings, catalogue=small_catalogue())) as client:
        response = await client.post(
            "/v1/admin/erase", json={"site_id": "shop", "visitor_id": "visitor-0001"}, headers=headers
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"]


async def test_erase_is_answered_once_kafka_acknowledged_the_record(
    privacy_settings: Settings, site_id: str
) -> None:
    vid = visitor()
    async with erasures_from_now(privacy_settings) as consumer:
        async with running(create_app(privacy_settings, catalogue=small_catalogue())) as client:
            # The producer connects in the background; an erasure before that is a clean 503.
            deadline = time.monotonic() + 30
            while True:
                response = await client.post(
                    "/v1/admin/erase", json={"site_id": site_id, "visitor_id": vid}, headers=ADMIN
                )
                if response.status_code != 503 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            text = (await client.get("/metrics")).text
        assert response.status_code == 202, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        key, record = await find_record(consumer, body["request_id"])
    assert key == f"{site_id}:{vid}".encode()
    ErasureRequest.model_validate(record)  # the worker (#5) parses exactly this
    assert record == {
        "schema_version": 1,
        "site_id": site_id,
        "visitor_id": vid,
        "request_id": body["request_id"],
        "requested_at": record["requested_at"],
    }
    assert abs(record["requested_at"] - time.time() * 1000) < 60_000
    assert body == {"status": "accepted", **{k: v for k, v in record.items() if k != "schema_version"}}
    assert metric_value(text, "tracker_offer_erasure_requests_total", result="accepted") == 1


async def test_erase_keeps_the_callers_request_id(privacy_settings: Settings, site_id: str) -> None:
    request_id = uuid.uuid4().hex
    async with erasures_from_now(privacy_settings) as consumer:
        async with running(create_app(privacy_settings, catalogue=small_catalogue())) as client:
            for _ in range(300):
                response = await client.post(
                    "/v1/admin/erase",
                    json={"site_id": site_id, "visitor_id": visitor(), "request_id": request_id},
                    headers=ADMIN,
                )
                if response.status_code != 503:
                    break
                await asyncio.sleep(0.1)
        assert response.status_code == 202
        assert response.json()["request_id"] == request_id
        await find_record(consumer, request_id)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"site_id": "shop"}, "body parameter 'visitor_id' is required"),
        ({"site_id": "shop", "visitor_id": "someone@example.com"}, "body parameter 'visitor_id' is invalid"),
        (
            {"site_id": "shop", "visitor_id": "visitor-0001", "email": "x"},
            "body parameter 'email' is invalid",
        ),
        ({"site_id": "shop", "visitor_id": "visitor-0001", "request_id": "nope"}, "'request_id' is invalid"),
    ],
)
async def test_erase_refuses_bad_bodies_clearly(
    privacy_settings: Settings, payload: dict, fragment: str
) -> None:
    async with running(create_app(privacy_settings, catalogue=small_catalogue())) as client:
        response = await client.post("/v1/admin/erase", json=payload, headers=ADMIN)
    assert response.status_code == 422
    assert fragment in response.json()["detail"]
    assert "example.com" not in response.text


async def test_erase_with_kafka_down_is_a_503_to_retry(privacy_settings: Settings) -> None:
    no_kafka = privacy_settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{closed_port()}"})
    async with running(create_app(no_kafka, catalogue=small_catalogue())) as client:
        response = await client.post(
            "/v1/admin/erase", json={"site_id": "shop", "visitor_id": "visitor-0001"}, headers=ADMIN
        )
        text = (await client.get("/metrics")).text
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(no_kafka.retry_after_seconds)
    assert "retry" in response.json()["detail"]
    assert metric_value(text, "tracker_offer_erasure_requests_total", result="unavailable") == 1


async def test_erasure_status_reads_the_workers_confirmation(
    privacy_settings: Settings, site_id: str
) -> None:
    done_id, pending_id = uuid.uuid4().hex, uuid.uuid4().hex
    redis = Redis.from_url(privacy_settings.redis_url)
    try:
        confirmation = {"site_id": site_id, "visitor_id": "visitor-0001", "done_at": 1_800_000_000_000}
        await redis.set(keys.erasure_done(done_id), orjson.dumps(confirmation), ex=600)
    finally:
        await redis.aclose()
    async with running(create_app(privacy_settings, catalogue=small_catalogue())) as client:
        done = await client.get(f"/v1/admin/erase/{done_id}", headers=ADMIN)
        pending = await client.get(f"/v1/admin/erase/{pending_id}", headers=ADMIN)
        anonymous = await client.get(f"/v1/admin/erase/{done_id}")
        malformed = await client.get("/v1/admin/erase/not-an-id", headers=ADMIN)
    assert done.json() == {**confirmation, "request_id": done_id, "status": "done"}
    assert pending.json() == {"request_id": pending_id, "status": "pending"}
    assert anonymous.status_code == 401
    assert malformed.status_code == 422


async def test_privacy_endpoints_are_rate_limited_per_client(privacy_settings: Settings) -> None:
    limited = privacy_settings.model_copy(update={"privacy_rate_burst": 3, "privacy_rate_per_second": 0.01})
    async with running(create_app(limited, catalogue=small_catalogue())) as client:
        # Unauthenticated guesses use up the same bucket: the token cannot be brute-forced fast.
        erase = [
            (
                await client.post("/v1/admin/erase", json={}, headers={"Authorization": "Bearer guess"})
            ).status_code
            for _ in range(4)
        ]
        last = await client.post("/v1/admin/erase", json={}, headers=ADMIN)
        # Another endpoint has its own bucket; ids in the path share one.
        status = [
            (await client.get(f"/v1/admin/erase/{uuid.uuid4().hex}", headers=ADMIN)).status_code
            for _ in range(4)
        ]
        text = (await client.get("/metrics")).text
    assert erase == [401, 401, 401, 429]
    assert last.status_code == 429
    assert int(last.headers["retry-after"]) >= 1
    assert status == [200, 200, 200, 429]
    assert metric_value(text, "tracker_offer_rate_limited_total", handler="/v1/admin/erase") == 2
    assert metric_value(text, "tracker_offer_rate_limited_total", handler="/v1/admin/erase/{request_id}") == 1


# --- self-access -----------------------------------------------------------------------


def signed(site: str, vid: str, *, expires: int | None = None, key: str = KEY) -> dict[str, str]:
    expires = expires or int(time.time()) + 600
    return {
        "site": site,
        "visitor": vid,
        "expires": str(expires),
        "sig": sign_access(site, vid, expires, key),
    }


async def test_signed_link_returns_the_visitors_profile(privacy_settings: Settings, site_id: str) -> None:
    vid = visitor()
    await store_profile(privacy_settings, site_id, vid, {"shoes": 2, "books": 1})
    await store_caps(privacy_settings, site_id, vid, {"run-shoes": 3, "welcome": 1})
    async with running(create_app(privacy_settings, catalogue=small_catalogue())) as client:
        response = await client.get("/v1/me", params=signed(site_id, vid))
        text = (await client.get("/metrics")).text
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in response.headers
    body = response.json()
    assert (body["site_id"], body["visitor_id"]) == (site_id, vid)
    assert body["profile"]["counts"]["product_view"] == 3
    assert set(body["interests"]) == {"shoes", "books"}
    assert body["interests"]["shoes"] > body["interests"]["books"] > 0
    assert body["recent_offers"] == [
        {"offer_id": "run-shoes", "impressions": 3},
        {"offer_id": "welcome", "impressions": 1},
    ]
    assert body["frequency_caps"]["today"] == {"run-shoes": 3, "welcome": 1}
    assert body["retention_seconds"] == privacy_settings.profile_retention_seconds
    assert metric_value(text, "tracker_offer_self_access_requests_total", result="signed_link") == 1


@pytest.mark.parametrize(
    "tamper",
    ["other-visitor", "expired", "other-key", "missing-sig", "no-visitor"],
)
async def test_bad_signed_links_are_refused(privacy_settings: Settings, site_id: str, tamper: str) -> None:
    vid = visitor()
    params = signed(site_id, vid)
    if tamper == "other-visitor":
        params["visitor"] = visitor()
    elif tamper == "expired":
        params = signed(site_id, vid, expires=int(time.time()) - 1)
    elif tamper == "other-key":
        params = signed(site_id, vid, key="another-key")
    elif tamper == "missing-sig":
        del params["sig"]
    else:
        del params["visitor"]
    async with running(create_app(privacy_settings, catalogue=small_catalogue())) as client:
        response = await client.get("/v1/me", params=params)
        text = (await client.get("/metrics")).text
    assert response.status_code == 403
    assert response.json()["detail"]
    assert metric_value(text, "tracker_offer_self_access_requests_total", result="denied") == 1


async def test_signed_links_are_off_without_a_key(settings: Settings, site_id: str) -> None:
    async with running(create_app(settings, catalogue=small_catalogue())) as client:
        response = await client.get("/v1/me", params=signed(site_id, visitor()))
    assert response.status_code == 403
    assert "not enabled" in response.json()["detail"]


async def test_the_visitors_own_cookie_grants_access(privacy_settings: Settings, site_id: str) -> None:
    vid, other = visitor(), visitor()
    await store_profile(privacy_settings, site_id, vid, {"kitchen": 1})
    # Sent as a header: what a browser on the site's domain sends with the HttpOnly cookie.
    cookie = {"Cookie": f"{privacy_settings.visitor_cookie_name}={vid}"}
    async with running(create_app(privacy_settings, catalogue=small_catalogue())) as client:
        own = await client.get("/v1/me", params={"site": site_id}, headers=cookie)
        named = await client.get("/v1/me", params={"site": site_id, "visitor": vid}, headers=cookie)
        someone_else = await client.get("/v1/me", params={"site": site_id, "visitor": other}, headers=cookie)
        no_cookie = await client.get("/v1/me", params={"site": site_id, "visitor": vid})
        junk = await client.get(
            "/v1/me",
            params={"site": site_id},
            headers={"Cookie": f"{privacy_settings.visitor_cookie_name}=x@y"},
        )
    assert own.status_code == 200
    assert own.json()["visitor_id"] == vid
    assert set(own.json()["interests"]) == {"kitchen"}
    assert named.json() == {**own.json(), "interests": named.json()["interests"]}
    assert someone_else.status_code == 403
    assert no_cookie.status_code == 401
    assert privacy_settings.visitor_cookie_name in no_cookie.json()["detail"]
    assert junk.status_code == 401


async def test_unknown_visitor_sees_that_nothing_is_stored(privacy_settings: Settings, site_id: str) -> None:
    async with running(create_app(privacy_settings, catalogue=small_catalogue())) as client:
        body = (await client.get("/v1/me", params=signed(site_id, visitor()))).json()
    assert (body["profile"], body["interests"], body["recent_offers"], body["segment"]) == (
        None,
        {},
        [],
        None,
    )


async def test_self_access_with_redis_down_is_a_503(privacy_settings: Settings, site_id: str) -> None:
    down = privacy_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port()}/0"})
    async with running(create_app(down, catalogue=small_catalogue())) as client:
        response = await client.get("/v1/me", params=signed(site_id, visitor()))
    assert response.status_code == 503
    assert response.headers["retry-after"]
