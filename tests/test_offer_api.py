"""The offer API in-process against the session's real Redis and Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from serve_support import (
    HOME,
    closed_port,
    metric_value,
    offer_params,
    running,
    small_catalogue,
    store_profile,
    store_raw,
    visitor,
)

from tracker import keys
from tracker.kafka_producer import KafkaBatchProducer
from tracker.models.learner import ClickModel
from tracker.serve import create_app
from tracker.serve.decisions import DECISION_SCHEMA_VERSION, DecisionLog
from tracker.serve.metrics import OfferMetrics
from tracker.serve.offers import OfferResponse
from tracker.settings import Settings

pytestmark = pytest.mark.integration


async def test_shoes_visitor_gets_a_shoes_offer(settings: Settings, site_id: str) -> None:
    vid = visitor(site_id)
    await store_profile(settings, site_id, vid, {"shoes": 2, "kitchen": 1})
    async with running(create_app(settings, catalogue=small_catalogue())) as client:
        response = await client.get("/v1/offers", params=offer_params(site_id, vid))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    OfferResponse.model_validate(body)  # the documented shape is the real one
    assert re.fullmatch(r"[0-9a-f]{32}", body["decision_id"])
    assert body["offer"] == {
        "id": "run-shoes",
        "title": "Running shoes",
        "body": "20% off",
        "image": "/static/offers/run-shoes.svg",
        "link": "/c/shoes",
        "cta": "Shop shoes",
    }
    assert (body["slot"], body["personalised"], body["reason"], body["fallback"]) == (
        HOME,
        True,
        "interest:shoes",
        False,
    )


async def test_demo_catalogue_serves_its_shoes_offer(settings: Settings, site_id: str) -> None:
    vid = visitor(site_id)
    await store_profile(settings, site_id, vid, {"shoes": 3})
    async with running(create_app(settings)) as client:
        body = (await client.get("/v1/offers", params=offer_params(site_id, vid))).json()
    assert body["offer"]["id"] == "shoes-running-20"
    assert body["personalised"] is True


async def test_unknown_visitor_gets_the_default(settings: Settings, site_id: str) -> None:
    async with running(create_app(settings, catalogue=small_catalogue())) as client:
        body = (await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id)))).json()
    assert body["offer"]["id"] == "welcome"
    assert (body["personalised"], body["reason"], body["fallback"]) == (False, "no_profile", False)


async def test_known_visitor_without_matching_interest_gets_the_default(
    settings: Settings, site_id: str
) -> None:
    vid = visitor(site_id)
    await store_profile(settings, site_id, vid, {"books": 5})
    async with running(create_app(settings, catalogue=small_catalogue())) as client:
        body = (await client.get("/v1/offers", params=offer_params(site_id, vid))).json()
    assert body["offer"]["id"] == "welcome"
    assert (body["personalised"], body["reason"], body["fallback"]) == (False, "default", False)


async def test_profiles_of_other_sites_are_not_used(settings: Settings, site_id: str) -> None:
    vid = visitor(f"{site_id}-other")  # outside the holdout group of the site it asks for
    await store_profile(settings, site_id, vid, {"shoes": 3})
    async with running(create_app(settings, catalogue=small_catalogue())) as client:
        body = (await client.get("/v1/offers", params=offer_params(f"{site_id}-other", vid))).json()
    assert body["reason"] == "no_profile"


async def test_redis_down_serves_default_as_fallback_quickly(settings: Settings, site_id: str) -> None:
    down = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{closed_port()}/0", "redis_timeout_seconds": 0.2}
    )
    async with running(create_app(down, catalogue=small_catalogue())) as client:
        started = time.perf_counter()
        response = await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id)))
        elapsed = time.perf_counter() - started
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 200
    body = response.json()
    assert body["offer"]["id"] == "welcome"
    assert (body["personalised"], body["reason"], body["fallback"]) == (False, "redis_unavailable", True)
    assert elapsed < 2.0  # generous: the point is "not a socket default of seconds"
    assert metric_value(metrics, "tracker_offer_requests_total", outcome="fallback") == 1


async def _silent_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts and reads, never replies."""
    with contextlib.suppress(Exception):
        await reader.read()


async def _slow_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each command, but only after 3 s: long past the request's Redis budget and the
    test's bound (the API's client has no socket timeout of its own: the budget bounds connect,
    send and read together)."""
    with contextlib.suppress(Exception):
        while header := await reader.readline():  # RESP: *<n>, then n times $<len> and the bytes
            parts = []
            for _ in range(int(header[1:])):
                length = int((await reader.readline())[1:])
                parts.append((await reader.readexactly(length + 2))[:-2])
            await asyncio.sleep(3.0)
            writer.write(b"$-1\r\n" if parts[0].upper() == b"GET" else b"+OK\r\n")
            await writer.drain()


@pytest.mark.parametrize("behaviour", [_silent_redis, _slow_redis], ids=["silent", "slow"])
async def test_hung_redis_is_cut_off_at_the_budget(settings: Settings, site_id: str, behaviour: Any) -> None:
    handlers: set[asyncio.Task[None]] = set()

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await behaviour(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve_one, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    budget = 0.15
    hung = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{port}/0", "redis_timeout_seconds": budget}
    )
    try:
        async with running(create_app(hung, catalogue=small_catalogue())) as client:
            for _ in range(3):  # also after the first failure left the pool in whatever state
                started = time.perf_counter()
                body = (await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id)))).json()
                elapsed = time.perf_counter() - started
                assert (body["offer"]["id"], body["fallback"]) == ("welcome", True)
                # It waited for Redis (lower bound), then gave up (generous upper bound: loaded machines).
                assert budget * 0.9 <= elapsed < budget + 2.0
    finally:
        server.close()
        for handler in handlers:  # Python 3.11's server.close() leaves open connections running
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def test_unreadable_profile_falls_back_to_default(settings: Settings, site_id: str) -> None:
    vid = visitor(site_id)
    await store_raw(settings, keys.profile(site_id, vid), b'{"v": 999}')
    async with running(create_app(settings, catalogue=small_catalogue())) as client:
        body = (await client.get("/v1/offers", params=offer_params(site_id, vid))).json()
    assert (body["offer"]["id"], body["reason"], body["fallback"]) == ("welcome", "profile_unreadable", True)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"visitor": "visitor-0001", "slot": HOME}, "query parameter 'site' is required"),
        ({"site": "Shop!", "visitor": "visitor-0001", "slot": HOME}, "query parameter 'site' is invalid"),
        ({"site": "shop", "visitor": "short", "slot": HOME}, "query parameter 'visitor' is invalid"),
        (
            {"site": "shop", "visitor": "someone@example.com", "slot": HOME},
            "query parameter 'visitor' is invalid",
        ),
        (
            {"site": "shop", "visitor": "visitor-0001", "slot": "Home Hero"},
            "query parameter 'slot' is invalid",
        ),
        ({"site": "shop", "visitor": "visitor-0001"}, "query parameter 'slot' is required"),
    ],
)
async def test_bad_parameters_get_a_clear_422(
    settings: Settings, params: dict[str, str], fragment: str
) -> None:
    async with running(create_app(settings, catalogue=small_catalogue())) as client:
        response = await client.get("/v1/offers", params=params)
    assert response.status_code == 422
    body = response.json()
    assert fragment in body["detail"]
    assert "@" not in response.text  # the bad value is not echoed back
    assert all({"loc", "type", "message"} <= set(error) for error in body["errors"])


async def test_unknown_slot_answers_200_with_no_offer(settings: Settings, site_id: str) -> None:
    vid = visitor(site_id)
    await store_profile(settings, site_id, vid, {"shoes": 3})
    async with running(create_app(settings, catalogue=small_catalogue())) as client:
        response = await client.get("/v1/offers", params=offer_params(site_id, vid, slot="footer-banner"))
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 200
    body = response.json()
    assert body["offer"] is None
    assert (body["slot"], body["personalised"], body["reason"], body["fallback"]) == (
        "footer-banner",
        False,
        "no_offer",
        False,
    )
    assert metric_value(metrics, "tracker_offer_requests_total", outcome="empty") == 1


async def test_metrics_count_outcomes_without_visitor_ids(settings: Settings, site_id: str) -> None:
    vid = visitor(site_id)
    await store_profile(settings, site_id, vid, {"shoes": 3})
    async with running(create_app(settings, catalogue=small_catalogue())) as client:
        await client.get("/v1/offers", params=offer_params(site_id, vid))
        await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id)))
        await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id)))
        response = await client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert metric_value(text, "tracker_offer_requests_total", outcome="personalised") == 1
    assert metric_value(text, "tracker_offer_requests_total", outcome="default") == 2
    assert metric_value(text, "tracker_offer_requests_total", outcome="fallback") == 0
    assert metric_value(text, "tracker_offer_request_duration_seconds_count") == 3
    assert metric_value(text, "tracker_offer_decisions_dropped_total", reason="queue_full") == 0
    assert vid not in text and site_id not in text


async def test_health_and_readiness(settings: Settings) -> None:
    async with running(create_app(settings, catalogue=small_catalogue())) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["redis"] == "ok"

    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port()}/0"})
    async with running(create_app(down, catalogue=small_catalogue())) as client:
        assert (await client.get("/healthz")).status_code == 200
        degraded = await client.get("/readyz")
    # Still ready: without Redis the API serves defaults, and a load balancer must keep it.
    assert degraded.status_code == 200
    assert degraded.json()["status"] == "degraded"
    assert degraded.json()["redis"].startswith("unavailable")


async def test_each_decision_is_logged_to_kafka(settings: Settings, site_id: str) -> None:
    vid = visitor(site_id)
    await store_profile(settings, site_id, vid, {"shoes": 3})
    # No group: the consumer takes every partition of the topic, starting at its current end.
    consumer = AIOKafkaConsumer(
        settings.topic_decisions,
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            # aiokafka has no awaitable for "partitions assigned": poll for it.
            while not consumer.assignment():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)  # pin the end offsets before anything is produced

        async with running(create_app(settings, catalogue=small_catalogue())) as client:
            body = (await client.get("/v1/offers", params=offer_params(site_id, vid))).json()
            record = await _wait_for_decision(consumer, body["decision_id"], wait_seconds=30)
    finally:
        await consumer.stop()

    assert record["key"] == f"{site_id}:{vid}".encode()
    value = record["value"]
    # Schema 2: the policy's Decision.log_record() plus ids, time and fallback.
    assert set(value) == {
        "schema_version", "decision_id", "site_id", "visitor_id", "ts", "fallback", "log_version", "slot",
        "offer_id", "propensity", "reason", "personalised", "holdout", "explored", "epsilon",
        "model_version", "features_version", "features", "context", "eligible",
    }  # fmt: skip
    assert value["schema_version"] == DECISION_SCHEMA_VERSION == 2
    assert (value["decision_id"], value["site_id"], value["visitor_id"], value["slot"]) == (
        body["decision_id"],
        site_id,
        vid,
        HOME,
    )
    assert (value["offer_id"], value["personalised"], value["reason"], value["fallback"]) == (
        "run-shoes",
        True,
        "interest:shoes",
        False,
    )
    # The untrained model does not explore: the choice was certain.
    assert (value["propensity"], value["explored"], value["holdout"]) == (1.0, False, False)
    assert value["model_version"] == body["model_version"] == ClickModel().version
    assert value["features"]["match=interest"] == pytest.approx(0.75)  # 9 / (9 + 3): shoes only
    assert value["context"]["interests"]["shoes"] == pytest.approx(9.0, rel=0.01)  # 3 views of 3
    assert sorted(value["eligible"]) == ["knives", "run-shoes", "welcome"]
    assert abs(value["ts"] - time.time() * 1000) < 60_000


async def _wait_for_decision(
    consumer: AIOKafkaConsumer, decision_id: str, *, wait_seconds: float
) -> dict[str, Any]:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for messages in batches.values():
            for message in messages:
                value = orjson.loads(message.value)
                if value.get("decision_id") == decision_id:
                    return {"key": message.key, "value": value}
    raise AssertionError(f"decision {decision_id} did not reach Kafka within {wait_seconds}s")


async def test_kafka_down_does_not_slow_or_fail_responses(settings: Settings, site_id: str) -> None:
    no_kafka = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{closed_port()}"})
    vid = visitor(site_id)
    await store_profile(settings, site_id, vid, {"shoes": 3})
    app = create_app(no_kafka, catalogue=small_catalogue())
    started = time.perf_counter()
    async with running(app) as client:
        for _ in range(5):
            t0 = time.perf_counter()
            response = await client.get("/v1/offers", params=offer_params(site_id, vid))
            assert response.status_code == 200
            assert response.json()["offer"]["id"] == "run-shoes"
            assert time.perf_counter() - t0 < 2.0
        assert (await client.get("/readyz")).json()["decision_log"] == "connecting"
    assert time.perf_counter() - started < 10  # start and shutdown do not wait on the broker


async def test_decision_queue_overflow_is_counted_not_raised() -> None:
    metrics = OfferMetrics(process_collectors=False)
    settings = Settings(environment="test")
    # Not started: nothing drains the queue.
    decisions = DecisionLog(KafkaBatchProducer(settings), settings, metrics, max_queued=2)
    for _ in range(5):
        decisions.log({"site_id": "s", "visitor_id": "visitor-0001"})
    assert decisions.queued == 2
    assert metrics.decisions_dropped.labels(reason="queue_full")._value.get() == 3
    await decisions.stop()
    assert decisions.queued == 0
    assert metrics.decisions_dropped.labels(reason="shutdown")._value.get() == 2


async def test_a_connected_decision_log_hands_each_record_to_the_producer_at_once() -> None:
    """While connecting, records wait in the bounded queue and go out in order once connected;
    from then on each goes to the producer within log() itself, with no task to wake per record."""
    from test_collector_producer import StandIn

    metrics = OfferMetrics(process_collectors=False)
    settings = Settings(environment="test", kafka_bootstrap="127.0.0.1:9")
    kafka = StandIn(down_for=2)  # two failed metadata requests before it connects
    producer = KafkaBatchProducer(
        settings, client_factory=kafka, reconnect_initial_seconds=0.01, reconnect_max_seconds=0.02
    )
    decisions = DecisionLog(producer, settings, metrics)
    await producer.start()
    await decisions.start()
    try:
        decisions.log({"site_id": "s", "visitor_id": "visitor-0001", "n": 1})
        assert decisions.queued == 1 and kafka.produced == []  # not connected yet: it waits
        await asyncio.wait_for(producer.wait_connected(), 5)
        async with asyncio.timeout(5):
            while not kafka.produced:  # noqa: ASYNC110 - the drain task's turn
                await asyncio.sleep(0.01)
        decisions.log({"site_id": "s", "visitor_id": "visitor-0001", "n": 2})
        assert [orjson.loads(r.value)["n"] for r in kafka.produced] == [1, 2]  # no await in between
        assert decisions.queued == 0
    finally:
        await decisions.stop()
        await producer.stop()


async def test_many_apps_in_one_process_each_have_their_metrics(settings: Settings) -> None:
    apps = [create_app(settings, catalogue=small_catalogue()) for _ in range(3)]
    for app in apps:
        async with running(app) as client:
            text = (await client.get("/metrics")).text
        assert metric_value(text, "tracker_offer_requests_total", outcome="personalised") == 0
