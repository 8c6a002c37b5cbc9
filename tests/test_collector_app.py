"""The collector's HTTP behaviour with a stand-in producer: no Kafka needed.

What Kafka itself receives is covered in ``test_collector_kafka.py``; here the
producer records the batches it is given, or fails on demand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import httpx
import orjson
import pytest
from collector_support import page_view, running

from tracker.collect.app import create_app
from tracker.errors import BrokerUnavailableError, DeliveryError, DeliveryTimeoutError
from tracker.kafka_producer import Record
from tracker.schema import parse_tracked
from tracker.settings import Settings, SiteConfig

SITE = "shop-app"


class FakeProducer:
    """Records batches; raises ``failure`` instead when set."""

    def __init__(self) -> None:
        self.batches: list[list[Record]] = []
        self.failure: DeliveryError | None = None
        self.started = False
        self.stopped = False
        self.healthy = True

    @property
    def ready(self) -> bool:
        return self.started and self.healthy

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def check(self) -> bool:
        return self.ready

    async def send_batch(self, records: Sequence[Record]) -> None:
        if self.failure is not None:
            raise self.failure
        self.batches.append(list(records))

    @property
    def records(self) -> list[Record]:
        return [r for batch in self.batches for r in batch]


@pytest.fixture
def app_settings() -> Settings:
    return Settings(
        environment="test",
        kafka_bootstrap="127.0.0.1:9",  # never contacted: the producer is a stand-in
        max_body_bytes=4096,
        max_event_bytes=1024,
        max_batch_events=5,
        body_read_timeout_seconds=0.3,
        retry_after_seconds=7,
        sites=(SiteConfig(id=SITE, origins=("https://shop.example",)),),
    )


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
async def http(app_settings: Settings, producer: FakeProducer) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(app_settings, producer=producer)) as client:
        yield client


async def test_lifespan_starts_and_stops_the_producer(app_settings: Settings) -> None:
    producer = FakeProducer()
    app = create_app(app_settings, producer=producer)
    async with running(app):
        assert producer.started and not producer.stopped
    assert producer.stopped


async def test_accepted_batch_is_handed_to_the_producer_in_one_call(
    http: httpx.AsyncClient, producer: FakeProducer, app_settings: Settings
) -> None:
    events = [page_view(SITE), page_view(SITE), {"type": "page_view"}]
    response = await http.post("/v1/events", json={"events": events})
    assert response.status_code == 202
    assert response.json()["accepted"] == 2
    assert [r["index"] for r in response.json()["rejected"]] == [2]
    (batch,) = producer.batches  # valid events and dead letters acknowledged together
    assert [r.topic for r in batch] == [app_settings.topic_events] * 2 + [app_settings.topic_events_dlq]


async def test_delivery_failure_is_503_with_retry_after(
    http: httpx.AsyncClient, producer: FakeProducer
) -> None:
    for failure in (
        BrokerUnavailableError("not connected"),
        DeliveryTimeoutError("no ack"),
        DeliveryError("refused"),
    ):
        producer.failure = failure
        response = await http.post("/v1/events", json={"events": [page_view(SITE)]})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "7"
        assert response.json()["error"] == "unavailable"
        assert "not fully acknowledged: send it again later" in response.json()["message"]


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/plain", "text/plain;charset=UTF-8", "application/vnd.tracker+json", None],
)
async def test_json_and_text_plain_bodies_are_accepted(
    http: httpx.AsyncClient, producer: FakeProducer, content_type: str | None
) -> None:
    event = page_view(SITE)
    headers = {"content-type": content_type} if content_type else {}
    response = await http.post("/v1/events", content=orjson.dumps({"events": [event]}), headers=headers)
    assert response.status_code == 202, response.text
    assert str(parse_tracked(producer.records[0].value).event.event_id) == event["event_id"]


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"content-type": "application/x-www-form-urlencoded"}, "Content-Type"),
        ({"content-type": "multipart/form-data; boundary=x"}, "Content-Type"),
        ({"content-type": "application/json", "content-encoding": "gzip"}, "Content-Encoding 'gzip'"),
    ],
)
async def test_other_media_types_are_415(
    http: httpx.AsyncClient, producer: FakeProducer, headers: dict[str, str], fragment: str
) -> None:
    response = await http.post(
        "/v1/events", content=orjson.dumps({"events": [page_view(SITE)]}), headers=headers
    )
    assert response.status_code == 415
    assert fragment in response.json()["message"]
    assert producer.batches == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"", 400, "malformed_json"),
        (b"[1, 2]", 422, "invalid_batch"),
        (b'{"evnets": []}', 422, "invalid_batch"),
        (b'{"events": []}', 422, "invalid_batch"),
        (b'{"events": "all"}', 422, "invalid_batch"),
        (b'{"events": [{}], "sent_at": "yesterday"}', 422, "invalid_batch"),
        (orjson.dumps({"events": [{}] * 6}), 413, "too_large"),
    ],
)
async def test_bodies_that_are_not_batches_are_refused_whole(
    http: httpx.AsyncClient, producer: FakeProducer, body: bytes, status: int, code: str
) -> None:
    response = await http.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert response.json()["error"] == code
    assert response.json()["message"]
    assert producer.batches == []


async def test_bad_content_length_is_400(http: httpx.AsyncClient, producer: FakeProducer) -> None:
    response = await http.post("/v1/events", content=b"{}", headers={"content-length": "lots"})
    assert response.status_code == 400
    assert "Content-Length 'lots'" in response.json()["message"]


async def test_slow_body_is_408(http: httpx.AsyncClient, producer: FakeProducer) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"events": ['
        await asyncio.sleep(2)  # longer than body_read_timeout_seconds
        yield b"]}"

    response = await http.post("/v1/events", content=trickle())
    assert response.status_code == 408
    assert response.json()["error"] == "body_timeout"
    assert producer.batches == []


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"events": [' + b"[" * 2000 + b"]" * 2000 + b"]}",
        b'{"events": [null, true, 1e400, -0, "\\ud800", 123456789012345678901234567890]}',
        b'{"events": [{"type": {"nested": ["x"]}, "event_id": [], "site_id": {}, "visitor_id": 1.5}]}',
        b'{"events": [{"type": "purchase", "items": [[[]]], "value": "NaN"}]}',
        '{"events": [{"type": "search", "query": "\u0000\u202e"}]}'.encode(),
        b"\x00\x01\x02",
        b"null",
    ],
)
async def test_hostile_bodies_never_cause_a_server_error(http: httpx.AsyncClient, body: bytes) -> None:
    # ASGITransport re-raises unhandled exceptions, so a crash fails this test loudly.
    response = await http.post("/v1/events", content=body, headers={"content-type": "text/plain"})
    assert 200 <= response.status_code < 500
    assert response.headers["content-type"] == "application/json"


async def test_metrics_count_outcomes_without_visitor_ids(
    http: httpx.AsyncClient, producer: FakeProducer
) -> None:
    visitor = "visitor-secret-42"
    events = [page_view(SITE, visitor_id=visitor)] * 2 + [
        {"type": "bogus"},
        page_view(SITE, title="x" * 2000),
    ]
    assert (await http.post("/v1/events", json={"events": events})).status_code == 202
    assert (await http.post("/v1/events", content=b"{")).status_code == 400
    producer.failure = DeliveryTimeoutError("no ack")
    assert (await http.post("/v1/events", json={"events": [page_view(SITE)]})).status_code == 503

    response = await http.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert 'tracker_collector_events_total{outcome="accepted",reason="none"} 2.0' in text
    assert 'tracker_collector_events_total{outcome="rejected",reason="schema"} 1.0' in text
    assert 'tracker_collector_events_total{outcome="rejected",reason="too_large"} 1.0' in text
    assert 'tracker_collector_requests_total{endpoint="events",reason="none",status="202"} 1.0' in text
    assert (
        'tracker_collector_requests_total{endpoint="events",reason="malformed_json",status="400"} 1.0' in text
    )
    assert 'tracker_collector_requests_total{endpoint="events",reason="unavailable",status="503"} 1.0' in text
    assert 'tracker_collector_request_duration_seconds_count{endpoint="events"} 3.0' in text
    assert "tracker_collector_produce_duration_seconds_count 2.0" in text  # the 202 and the 503
    assert 'tracker_collector_kafka_errors_total{kind="timeout"} 1.0' in text
    assert "tracker_collector_batch_events_count 2.0" in text  # the 400 was no batch
    assert 'tracker_collector_batch_events_bucket{le="5.0"} 2.0' in text
    assert "tracker_collector_inflight_bytes 0.0" in text  # released after the 202 and the 503
    assert "tracker_collector_producer_ready 1.0" in text
    assert visitor not in text
    assert SITE not in text


async def test_many_apps_have_independent_metrics(app_settings: Settings) -> None:
    first, second = FakeProducer(), FakeProducer()
    async with (
        running(create_app(app_settings, producer=first)) as one,
        running(create_app(app_settings, producer=second)) as two,
    ):
        assert (await one.post("/v1/events", json={"events": [page_view(SITE)]})).status_code == 202
        assert 'status="202"' in (await one.get("/metrics")).text
        assert 'status="202"' not in (await two.get("/metrics")).text


async def test_health_and_readiness(http: httpx.AsyncClient, producer: FakeProducer) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).status_code == 200
    producer.healthy = False
    assert (await http.get("/healthz")).status_code == 200  # alive regardless of Kafka
    response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"] == "not_ready"
    assert "tracker_collector_producer_ready 0.0" in (await http.get("/metrics")).text


class GatedProducer(FakeProducer):
    """Holds every batch until the gate opens: batches stay in flight meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.arrived = asyncio.Event()
        self.waiting = 0

    async def send_batch(self, records: Sequence[Record]) -> None:
        self.waiting += 1
        self.arrived.set()
        await self.gate.wait()
        await super().send_batch(records)


async def test_full_in_flight_buffer_is_503_at_once_and_frees_up(app_settings: Settings) -> None:
    producer = GatedProducer()
    bounded = app_settings.model_copy(update={"max_inflight_events": 3})
    async with running(create_app(bounded, producer=producer)) as http:
        # Two batches of two events wait for Kafka: 4 records, over the bound of 3 after the first.
        first = asyncio.create_task(http.post("/v1/events", json={"events": [page_view(SITE)] * 2}))
        await asyncio.wait_for(producer.arrived.wait(), timeout=10)
        assert "tracker_collector_inflight_records 2.0" in (await http.get("/metrics")).text
        refused = await http.post("/v1/events", json={"events": [page_view(SITE)] * 2})
        assert refused.status_code == 503
        assert refused.json()["error"] == "overloaded"
        assert refused.headers["retry-after"] == "7"
        assert producer.waiting == 1  # the refused batch never reached the producer
        producer.gate.set()
        assert (await first).status_code == 202
        assert (await http.post("/v1/events", json={"events": [page_view(SITE)] * 2})).status_code == 202
        text = (await http.get("/metrics")).text
    assert "tracker_collector_inflight_records 0.0" in text
    assert 'tracker_collector_requests_total{endpoint="events",reason="overloaded",status="503"} 1.0' in text


async def test_a_batch_bigger_than_the_buffer_still_goes_alone(app_settings: Settings) -> None:
    bounded = app_settings.model_copy(update={"max_inflight_events": 1})
    producer = FakeProducer()
    async with running(create_app(bounded, producer=producer)) as http:
        response = await http.post("/v1/events", json={"events": [page_view(SITE)] * 3})
    assert response.status_code == 202
    assert len(producer.records) == 3


async def test_nesting_deeper_than_the_parser_allows_is_400(http: httpx.AsyncClient) -> None:
    body = b'{"events": [' + b"[" * 1100 + b"]" * 1100 + b"]}"
    response = await http.post("/v1/events", content=body, headers={"content-type": "text/plain"})
    assert response.status_code == 400
    assert "depth limit exceeded" in response.json()["message"]


async def test_openapi_and_unknown_routes_do_not_break(http: httpx.AsyncClient) -> None:
    assert (await http.get("/openapi.json")).status_code == 200
    assert (await http.get("/v1/nothing-here")).status_code == 404
    # FastAPI's own validation errors come in the collector's error shape.
    response = await http.get("/v1/p.gif", params={"site": SITE})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["errors"][0]["field"] == "url"


async def test_requests_beyond_the_concurrency_bound_are_503_at_once(app_settings: Settings) -> None:
    producer = GatedProducer()
    bounded = app_settings.model_copy(update={"max_concurrent_requests": 1})
    async with running(create_app(bounded, producer=producer)) as http:
        first = asyncio.create_task(http.post("/v1/events", json={"events": [page_view(SITE)]}))
        await asyncio.wait_for(producer.arrived.wait(), timeout=10)
        assert "tracker_collector_requests_in_progress 1.0" in (await http.get("/metrics")).text
        refused = await http.post("/v1/events", json={"events": [page_view(SITE)]})
        pixel = await http.get("/v1/p.gif", params={"site": SITE, "url": "https://shop.example/"})
        producer.gate.set()
        assert (await first).status_code == 202
        again = await http.post("/v1/events", json={"events": [page_view(SITE)]})
    assert (refused.status_code, refused.json()["error"], refused.headers["retry-after"]) == (
        503,
        "overloaded",
        "7",
    )
    assert pixel.status_code == 503
    assert again.status_code == 202
