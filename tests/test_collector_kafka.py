"""The collector against the session's real Kafka: what a 202 promises is in the topics.

Each test reads only the records appended to ``events`` and ``events.dlq`` while it ran
(offsets taken before it posts) and, within those, only its own ``site_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from collector_support import DEFAULT_CLIENT, Tails, open_tails, page_view, product_view, running

from tracker.collect.app import create_app
from tracker.kafka_producer import KafkaBatchProducer
from tracker.schema import partition_key
from tracker.settings import Settings, SiteConfig

pytestmark = pytest.mark.integration


@pytest.fixture
async def tails(settings: Settings) -> AsyncIterator[Tails]:
    async with open_tails(settings) as opened:
        yield opened


@pytest.fixture
def collector_settings(settings: Settings, site_id: str) -> Settings:
    """The session's settings with this test's site registered."""
    return settings.model_copy(update={"sites": (SiteConfig(id=site_id, origins=("https://shop.example",)),)})


@pytest.fixture
async def http(collector_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(collector_settings)) as client:
        yield client


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_valid_batch_is_in_the_events_topic_when_202_arrives(
    http: httpx.AsyncClient, tails: Tails, site_id: str, settings: Settings
) -> None:
    events = [
        page_view(site_id, visitor_id="visitor-aaaa1"),
        product_view(site_id, visitor_id="visitor-aaaa1"),
        page_view(site_id, visitor_id="visitor-bbbb2"),
    ]
    before = int(time.time() * 1000)
    response = await http.post("/v1/events", json={"events": events, "sent_at": before})

    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 3, "rejected": [], "dropped": 0}
    written = await tails.events(site_id)
    assert sorted(str(t.event.event_id) for _, t, _ in written) == sorted(e["event_id"] for e in events)
    for key, tracked, _ in written:
        assert key == partition_key(site_id, tracked.event.visitor_id)
        assert before <= tracked.server.received_at <= int(time.time() * 1000)
        assert tracked.server.ip_prefix == "203.0.113.0/24"
    # One visitor's events keep their order: same key, hence same partition, in batch order.
    first_visitor = [str(t.event.event_id) for k, t, _ in written if t.event.visitor_id == "visitor-aaaa1"]
    assert first_visitor == [events[0]["event_id"], events[1]["event_id"]]
    assert await tails.dead_letters(site_id) == []


async def test_mixed_batch_accepts_valid_and_dead_letters_invalid(
    tails: Tails, site_id: str, collector_settings: Settings
) -> None:
    settings = collector_settings
    good = [page_view(site_id), page_view(site_id)]
    bad_schema = page_view(site_id, visitor_id="short")
    unknown_field = page_view(site_id, email="someone@example.com")
    too_large = page_view(site_id, title="t" * 500, url="https://shop.example/" + "p" * 2000)
    too_large["referrer"] = "https://ref.example/" + "r" * 2000  # schema-valid, only too big
    big_settings = settings.model_copy(update={"max_event_bytes": 4096})
    batch = [good[0], bad_schema, unknown_field, good[1], too_large]

    async with running(create_app(big_settings)) as client:
        response = await client.post("/v1/events", json={"events": batch})

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 2
    rejected = {r["index"]: r for r in body["rejected"]}
    assert sorted(rejected) == [1, 2, 4]
    assert rejected[1]["event_id"] == bad_schema["event_id"]
    assert rejected[1]["reason"] == "schema"
    assert rejected[1]["errors"][0]["field"] == "visitor_id"
    assert rejected[2]["errors"][0]["field"] == "email"
    assert rejected[4]["reason"] == "too_large"

    written = await tails.events(site_id)
    assert sorted(str(t.event.event_id) for _, t, _ in written) == sorted(e["event_id"] for e in good)

    dead_letters = [d for d, _ in await tails.dead_letters(site_id)]
    assert len(dead_letters) == 3
    dead = {
        orjson.loads(d.payload)["event_id"] if not d.payload_truncated else "truncated": d
        for d in dead_letters
    }
    assert dead[bad_schema["event_id"]].reason == "schema"
    assert dead[bad_schema["event_id"]].errors[0]["field"] == "visitor_id"
    assert dead[bad_schema["event_id"]].site_id == site_id
    assert dead[unknown_field["event_id"]].errors[0]["field"] == "email"
    assert dead["truncated"].reason == "too_large"
    assert too_large["event_id"] in dead["truncated"].payload
    assert len(dead["truncated"].payload.encode()) <= settings.dlq_payload_max_bytes


async def test_text_plain_body_from_send_beacon_is_accepted(
    http: httpx.AsyncClient, tails: Tails, site_id: str
) -> None:
    event = page_view(site_id)
    response = await http.post(
        "/v1/events",
        content=orjson.dumps({"events": [event]}),
        headers={"content-type": "text/plain;charset=UTF-8"},
    )
    assert response.status_code == 202, response.text
    assert [str(t.event.event_id) for _, t, _ in await tails.events(site_id)] == [event["event_id"]]


@pytest.mark.parametrize(
    ("client_ip", "prefix", "forbidden"),
    [
        ("203.0.113.77", "203.0.113.0/24", [b"203.0.113.77", b".77"]),
        (
            "2001:db8:abcd:12:3456:789a:bcde:f012",
            "2001:db8:abcd::/48",
            [b"3456", b"789a", b"bcde:f012", b":12:"],
        ),
    ],
)
async def test_raw_ip_never_reaches_kafka(
    collector_settings: Settings,
    tails: Tails,
    site_id: str,
    client_ip: str,
    prefix: str,
    forbidden: list[bytes],
) -> None:
    settings = collector_settings
    batch = [page_view(site_id), page_view(site_id, visitor_id="x")]  # one for each topic
    async with running(create_app(settings), client=(client_ip, 40000)) as client:
        response = await client.post("/v1/events", json={"events": batch})
    assert response.status_code == 202, response.text

    written = await tails.events(site_id)
    dead = await tails.dead_letters(site_id)
    assert len(written) == 1 and len(dead) == 1
    assert written[0][1].server.ip_prefix == prefix
    for raw in [written[0][2], written[0][0] or b"", dead[0][1]]:
        assert client_ip.encode() not in raw
        for fragment in forbidden:
            assert fragment not in raw


async def test_malformed_json_is_400_and_writes_nothing(
    http: httpx.AsyncClient, tails: Tails, site_id: str
) -> None:
    body = orjson.dumps({"events": [page_view(site_id)]})[:-3]  # cut off mid-document
    response = await http.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["message"]
    assert "column" in response.json()["message"]
    assert await tails.events(site_id) == []
    assert await tails.dead_letters(site_id) == []


def oversized_body(site_id: str, settings: Settings) -> bytes:
    """Valid events, fewer than ``max_batch_events``, adding up to more than ``max_body_bytes``:
    only the byte limit can refuse it."""
    event = page_view(site_id, title="t" * 500, url="https://shop.example/" + "p" * 2000)
    per_event = len(orjson.dumps(event)) + 1
    count = settings.max_body_bytes // per_event + 2
    assert count < settings.max_batch_events, "events too small to exceed the byte limit first"
    body = orjson.dumps({"events": [event] * count})
    assert len(body) > settings.max_body_bytes
    return body


async def test_oversized_body_with_honest_content_length_is_413(
    http: httpx.AsyncClient, tails: Tails, site_id: str, settings: Settings
) -> None:
    body = oversized_body(site_id, settings)
    response = await http.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert f"{len(body)} bytes" in response.json()["message"]
    assert await tails.events(site_id) == []


async def test_oversized_body_without_content_length_is_413(
    http: httpx.AsyncClient, tails: Tails, site_id: str, settings: Settings
) -> None:
    body = oversized_body(site_id, settings)

    async def chunks() -> AsyncIterator[bytes]:  # streamed: no Content-Length header at all
        for start in range(0, len(body), 16_384):
            yield body[start : start + 16_384]

    response = await http.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert f"over the limit of {settings.max_body_bytes} bytes" in response.json()["message"]
    assert await tails.events(site_id) == []


async def test_oversized_body_with_lying_content_length_is_413(
    http: httpx.AsyncClient, tails: Tails, site_id: str, settings: Settings
) -> None:
    body = oversized_body(site_id, settings)
    response = await http.post(
        "/v1/events", content=body, headers={"content-type": "application/json", "content-length": "100"}
    )
    assert response.status_code == 413
    assert f"over the limit of {settings.max_body_bytes} bytes" in response.json()["message"]
    assert await tails.events(site_id) == []


async def test_too_many_events_is_413(
    http: httpx.AsyncClient, tails: Tails, site_id: str, settings: Settings
) -> None:
    events = [page_view(site_id) for _ in range(settings.max_batch_events + 1)]
    response = await http.post("/v1/events", json={"events": events})
    assert response.status_code == 413
    assert f"limit is {settings.max_batch_events}" in response.json()["message"]
    assert await tails.events(site_id) == []
    # The limit itself is fine.
    response = await http.post("/v1/events", json={"events": events[:-1]})
    assert response.status_code == 202
    assert len(await tails.events(site_id)) == settings.max_batch_events


async def test_readyz_is_200_once_the_producer_is_connected(http: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 15
    while (response := await http.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.1)
    assert response.json() == {"status": "ready"}


async def test_kafka_unreachable_starts_and_answers_503_with_retry_after(
    collector_settings: Settings, site_id: str
) -> None:
    settings = collector_settings
    down = settings.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{closed_port()}", "produce_timeout_seconds": 0.5}
    )
    app = create_app(down)
    started = time.monotonic()
    async with running(app) as client:
        assert time.monotonic() - started < 2, "startup must not wait for Kafka"
        response = await client.post("/v1/events", json={"events": [page_view(site_id)]})
        assert response.status_code == 503
        assert response.headers["retry-after"] == str(down.retry_after_seconds)
        assert response.json()["error"] == "unavailable"
        assert down.kafka_bootstrap in response.json()["message"]
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
    assert time.monotonic() - started < 10, "shutdown must not hang on a dead cluster"


@contextlib.asynccontextmanager
async def forwarder(port: int, target: str) -> AsyncIterator[None]:
    """A TCP relay on ``port`` to ``target``: Kafka 'comes up' on that port when it opens."""
    host, _, target_port = target.rpartition(":")

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65_536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(target_port))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_collector_recovers_when_kafka_becomes_reachable(
    collector_settings: Settings, tails: Tails, site_id: str
) -> None:
    settings = collector_settings
    port = closed_port()
    late = settings.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{port}", "produce_timeout_seconds": 1.0}
    )
    producer = KafkaBatchProducer(late, reconnect_initial_seconds=0.05, reconnect_max_seconds=0.2)
    async with running(create_app(late, producer=producer)) as client:
        first = page_view(site_id)
        response = await client.post("/v1/events", json={"events": [first]})
        assert response.status_code == 503

        # Bootstrap goes through the relay; the broker then advertises its own address.
        async with forwarder(port, settings.kafka_bootstrap.split(",")[0]):
            retried = page_view(site_id)
            deadline = time.monotonic() + 20
            while (
                response := await client.post("/v1/events", json={"events": [retried]})
            ).status_code != 202:
                assert response.status_code == 503, response.text
                assert time.monotonic() < deadline, "the collector did not reconnect"
                await asyncio.sleep(0.1)
            assert (await client.get("/readyz")).status_code == 200

    assert [str(t.event.event_id) for _, t, _ in await tails.events(site_id)] == [retried["event_id"]]


async def test_default_client_address_is_what_gets_truncated() -> None:
    # Guards the other tests: they rely on this address being the ASGI client.
    assert DEFAULT_CLIENT[0] == "203.0.113.77"


async def test_each_visitor_lands_on_the_partition_the_java_partitioner_picks(
    http: httpx.AsyncClient, site_id: str, settings: Settings
) -> None:
    """Decisions (aiokafka) and erasures are placed with murmur2, like the Java client; the
    collector's events must agree, or a visitor's erasure reaches another worker."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.partitioner.default import murmur2

    visitors = [f"visitor-part{i:04d}" for i in range(16)]
    response = await http.post(
        "/v1/events", json={"events": [page_view(site_id, visitor_id=v) for v in visitors]}
    )
    assert response.status_code == 202, response.text

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        partitions = sorted(consumer.partitions_for_topic(settings.topic_events) or ())
        assert len(partitions) > 1, "the test needs several partitions to mean anything"
        consumer.assign([TopicPartition(settings.topic_events, p) for p in partitions])
        consumer.seek_to_beginning()
        placed: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while len(placed) < len(visitors) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    event = orjson.loads(record.value)["event"]
                    if event["site_id"] == site_id:
                        placed[event["visitor_id"]] = tp.partition
    finally:
        consumer.close()
    assert len(placed) == len(visitors)
    for visitor, partition in placed.items():
        key = partition_key(site_id, visitor)
        assert partition == (murmur2(key) & 0x7FFFFFFF) % len(partitions), visitor
