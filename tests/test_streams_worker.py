"""One real worker process on the session's Kafka and Redis: profiles, duplicates, sessions,
erasure, segments and metrics, end to end.

The worker runs with a 2-second session gap and a fast sweep so that idle sessions close
within the test; event times in the scripts are chosen against that gap.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
import redis
from streams_support import (
    Producer,
    Worker,
    event,
    expected_profiles,
    isolated_settings,
    now_ms,
    read_sessions,
    stored_profiles,
    tracked,
    wait_for,
)

from tracker import keys
from tracker.models.segments import SNAPSHOT_SCHEMA
from tracker.schema import ErasureRequest, TrackedEvent, partition_key
from tracker.settings import Settings

pytestmark = pytest.mark.integration

GAP_MS = 2_000


@pytest.fixture(scope="module")
def worker(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    settings = isolated_settings(stack, session_gap_seconds=GAP_MS / 1000, session_sweep_seconds=0.5)
    running = Worker(settings, tmp_path_factory.mktemp("streams-worker")).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def producer(worker: Worker) -> Iterator[Producer]:
    p = Producer(worker.settings)
    yield p
    p.close()


def visitor() -> str:
    return f"v-{uuid.uuid4().hex[:12]}"


def wait_profiles(settings: Settings, site_id: str, expected: dict[str, dict]) -> dict[str, dict]:
    """Wait until every visitor's stored profile has as many events as expected, then return all."""

    def caught_up() -> dict[str, dict] | None:
        stored = stored_profiles(settings, site_id, expected)
        done = all(
            sum(stored.get(v, {}).get("counts", {}).values()) >= sum(p["counts"].values())
            for v, p in expected.items()
        )
        return stored if done else None

    return wait_for(caught_up, 60, "profiles reflecting every event")


def test_profile_values_for_a_scripted_visit(worker: Worker, producer: Producer, site_id: str) -> None:
    v, t = visitor(), now_ms() - 60_000
    script = [
        event(site_id, v, "page_view", t, url="https://shop.example/?utm_source=news&utm_medium=email"),
        event(site_id, v, "product_view", t + 100, product_id="tent-2p", category="outdoor", price=199.0),
        event(site_id, v, "page_ping", t + 200, engaged_ms=15_000, scroll_depth=70),
        event(site_id, v, "product_view", t + 300, product_id="stove-1", category="outdoor"),
        event(site_id, v, "add_to_cart", t + 400, product_id="tent-2p", category="outdoor", quantity=1),
        event(site_id, v, "offer_impression", t + 500, decision_id="d-1", offer_id="outdoor-10"),
        event(site_id, v, "offer_click", t + 600, decision_id="d-1", offer_id="outdoor-10"),
        event(
            site_id,
            v,
            "purchase",
            t + 700,
            order_id="o-1",
            value=199.0,
            currency="EUR",
            items=[{"product_id": "tent-2p", "category": "outdoor", "price": 199.0}],
        ),
    ]
    producer.send(tracked(e) for e in script)
    expected = expected_profiles(worker.settings, producer.written)
    stored = wait_profiles(worker.settings, site_id, expected)
    assert stored == expected
    profile = stored[v]
    assert profile["counts"] == {
        "page_view": 1,
        "product_view": 2,
        "page_ping": 1,
        "add_to_cart": 1,
        "offer_impression": 1,
        "offer_click": 1,
        "purchase": 1,
    }
    assert profile["rfm"] == {"orders": 1, "revenue": 199.0, "last_order": t + 700}
    assert (
        list(profile["interests"]) == ["outdoor"]
        and profile["products"]["tent-2p"] > profile["products"]["stove-1"]
    )
    assert profile["offers"] == {"shown": [["outdoor-10", t + 500]], "clicked": [["outdoor-10", t + 600]]}
    assert profile["session"]["source"] == "email" and profile["session"]["engaged_s"] == 15
    assert profile["sessions"] == 1 and profile["engagement"] > 0


def test_anonymous_pixel_hits_are_not_profiled(worker: Worker, producer: Producer, site_id: str) -> None:
    person, pixel, t = visitor(), visitor(), now_ms()
    hit = TrackedEvent.model_validate(
        {
            "event": event(site_id, pixel, "page_view", t, url="https://shop.example/"),
            "server": {"received_at": now_ms(), "anonymous": True},
        }
    )
    producer.send([hit, tracked(event(site_id, person, "page_view", t + 1, url="https://shop.example/"))])
    wait_for(lambda: stored_profiles(worker.settings, site_id, [person]), 60, "the visitor's profile")
    assert stored_profiles(worker.settings, site_id, [pixel]) == {}
    assert worker.metric("tracker_worker_events_total", outcome="anonymous") >= 1


def test_duplicates_never_count_twice(worker: Worker, producer: Producer, site_id: str) -> None:
    v = visitor()
    batch = [
        tracked(event(site_id, v, "product_view", now_ms(), product_id=f"b-{n}", category="books"))
        for n in range(3)
    ]
    before = worker.metric("tracker_worker_duplicates_skipped_total", reason="event_id")
    producer.send(batch)
    producer.send(batch)  # a client retry: same event ids, new offsets
    producer.send([batch[0]])
    stored = wait_profiles(worker.settings, site_id, {v: {"counts": {"product_view": 3}}})
    # Later records of the same visitor land behind the duplicates: once they count, so have those.
    marker = tracked(event(site_id, v, "page_view", now_ms()))
    producer.send([marker])
    stored = wait_profiles(worker.settings, site_id, {v: {"counts": {"x": 4}}})
    assert stored[v]["counts"] == {"product_view": 3, "page_view": 1}
    assert worker.metric("tracker_worker_duplicates_skipped_total", reason="event_id") - before >= 4


def test_sessions_close_on_gap_new_source_and_idle_sweep(
    worker: Worker, producer: Producer, site_id: str
) -> None:
    gappy, switcher, idle = visitor(), visitor(), visitor()
    t = now_ms() - 60_000
    first = [
        event(site_id, gappy, "page_view", t, url="https://shop.example/"),
        event(site_id, gappy, "product_view", t + 1_000, product_id="p1", category="shoes"),
        # Out of order, but within a gap of the session's start: same session.
        event(site_id, gappy, "product_view", t - 1_500, product_id="p2", category="shoes"),
    ]
    later = event(site_id, gappy, "page_view", t + 1_000 + GAP_MS + 1, url="https://shop.example/again")
    switch = [
        event(site_id, switcher, "page_view", t, url="https://shop.example/?utm_source=a&utm_campaign=x"),
        event(
            site_id, switcher, "page_view", t + 500, url="https://shop.example/?utm_source=b&utm_campaign=y"
        ),
    ]
    lone = [
        event(site_id, idle, "page_view", t, url="https://shop.example/", referrer="https://www.bing.com/")
    ]
    producer.send(tracked(e) for e in [*first, later, *switch, *lone])

    def sessions_of(records, v):
        return sorted((r for r in records if r.visitor_id == v), key=lambda r: r.start)

    def all_closed():
        records = read_sessions(worker.settings, timeout=5)
        if (
            len({r.session_id for r in sessions_of(records, gappy)}) >= 2
            and len(sessions_of(records, switcher)) >= 2
            and sessions_of(records, idle)
        ):
            return records
        return None

    records = wait_for(all_closed, 60, "the gap, source and idle sessions on the sessions topic")
    by_gap = sessions_of(records, gappy)
    assert by_gap[0].closed_by == "gap" and by_gap[0].events == 3
    assert (by_gap[0].start, by_gap[0].end) == (t - 1_500, t + 1_000)
    assert by_gap[0].products == ["p1", "p2"] and by_gap[0].landing_page == "https://shop.example/"
    assert by_gap[1].closed_by == "idle" and by_gap[1].events == 1
    switched = sessions_of(records, switcher)
    assert switched[0].closed_by == "source" and switched[0].referrer_class == "campaign"
    lone_record = sessions_of(records, idle)[0]
    assert lone_record.closed_by == "idle" and lone_record.referrer_class == "search"
    assert not lone_record.converted and lone_record.page_views == 1
    stored = stored_profiles(worker.settings, site_id, [gappy, switcher])
    assert stored[gappy]["sessions"] == 2 and stored[switcher]["sessions"] == 2


def test_erasure_end_to_end_until_consent_is_given_again(
    worker: Worker, producer: Producer, site_id: str
) -> None:
    settings = worker.settings
    v = visitor()
    old = tracked(event(site_id, v, "product_view", now_ms(), product_id="p1", category="garden"))
    producer.send([old])
    wait_profiles(settings, site_id, {v: {"counts": {"product_view": 1}}})

    def serve_offer() -> None:  # what the offer API logs for each offer it serves
        record = {"decision_id": uuid.uuid4().hex, "site_id": site_id, "visitor_id": v, "ts": now_ms()}
        record |= {"slot": "home-hero", "offer_id": "garden-offer", "propensity": 1.0, "features": {}}
        producer.send_raw(settings.topic_decisions, partition_key(site_id, v), orjson.dumps(record))

    client = redis.Redis.from_url(settings.redis_url)
    try:
        serve_offer()
        caps = orjson.loads(wait_for(lambda: client.get(keys.caps(site_id, v)), 60, "the offer counted"))
        assert caps["today"] == {"garden-offer": 1} and caps["session"] == {"garden-offer": 1}

        request = ErasureRequest(
            site_id=site_id, visitor_id=v, request_id=uuid.uuid4().hex, requested_at=now_ms()
        )
        producer.send_raw(
            settings.topic_erasures, partition_key(site_id, v), request.model_dump_json().encode()
        )
        done = wait_for(lambda: client.get(keys.erasure_done(request.request_id)), 60, "erasure confirmation")
        confirmation = orjson.loads(done)
        assert confirmation["status"] == "done" and confirmation["visitor_id"] == v
        assert client.get(keys.profile(site_id, v)) is None
        assert client.get(keys.caps(site_id, v)) is None, "the offers shown to them go too"
        assert orjson.loads(client.get(keys.erased(site_id, v)))["request_id"] == request.request_id

        # Events and offers after the erasure are not profiled, nor counted ...
        erased_before = worker.metric("tracker_worker_events_total", outcome="erased")
        producer.send(
            [tracked(event(site_id, v, "product_view", now_ms(), product_id="p2", category="garden"))]
        )
        serve_offer()
        wait_for(
            lambda: (
                worker.metric("tracker_worker_events_total", outcome="erased") > erased_before
                and worker.metric("tracker_worker_decisions_total", outcome="erased") >= 1
            ),
            60,
            "the post-erasure event and decision to be dropped",
        )
        assert client.get(keys.profile(site_id, v)) is None
        assert client.get(keys.caps(site_id, v)) is None
        # ... until consent is granted again; nothing of before comes back, not even the event ids.
        producer.send([tracked(event(site_id, v, "consent", now_ms(), state="granted")), old])
        stored = wait_profiles(settings, site_id, {v: {"counts": {"consent": 1, "product_view": 1}}})
        assert stored[v]["counts"] == {"consent": 1, "product_view": 1}
        assert stored[v]["sessions"] == 1
        assert client.get(keys.erased(site_id, v)) is None
    finally:
        client.close()


def test_segments_are_learned_by_one_owner_and_assigned(
    worker: Worker, producer: Producer, site_id: str
) -> None:
    settings = worker.settings
    visitors = [visitor() for _ in range(30)]
    t = now_ms()
    producer.send(
        tracked(event(site_id, v, "product_view", t + n, product_id=f"p{n}", category="c"))
        for i, v in enumerate(visitors)
        for n in range(1 + i % 5)
    )
    client = redis.Redis.from_url(settings.redis_url)
    try:
        version = int(
            wait_for(
                lambda: client.get(keys.segments_current(settings.worker_app_id)),
                60,
                "a published segment model",
            )
        )
        model = orjson.loads(client.get(keys.segments_model(settings.worker_app_id, version)))
        assert model["schema"] == SNAPSHOT_SCHEMA and len(model["centroids"]) == settings.segment_clusters
        ids = {int(c) for c in model["centroids"]}

        def segmented():
            producer.send(tracked(event(site_id, v, "page_view", now_ms())) for v in visitors[:3])
            raws = [client.get(keys.profile(site_id, v)) for v in visitors[:3]]
            profiles = [orjson.loads(r) for r in raws if r]
            return profiles if len(profiles) == 3 and all("segment" in p for p in profiles) else None

        for profile in wait_for(segmented, 60, "profiles carrying a segment"):
            assert profile["segment"] in ids and profile["segment_v"] >= 1
    finally:
        client.close()


def test_metrics_follow_prometheus_naming(worker: Worker) -> None:
    text = httpx.get(worker.metrics_url, timeout=5).text
    for name in (
        "tracker_worker_events_total",
        "tracker_worker_event_to_profile_seconds_bucket",
        "tracker_worker_sessions_closed_total",
        "tracker_worker_duplicates_skipped_total",
        "tracker_worker_consumer_lag_messages",
        "tracker_worker_table_keys",
        "tracker_worker_intake_records",
    ):
        assert name in text, f"{name} missing from /metrics"
    ours = [line for line in text.splitlines() if line.startswith("tracker_worker")]
    assert not [line for line in ours if "v-" in line or "site" in line], "no visitor or site in labels"
