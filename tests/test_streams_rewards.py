"""Offer decisions joined with their impressions and clicks into rewards, learned by the one
trainer and published to Redis as a click model the offer API can load: real worker process,
real Kafka and Redis."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
import redis
from streams_support import Producer, Worker, event, isolated_settings, now_ms, tracked, wait_for

from tracker import keys
from tracker.models.learner import decode_snapshot
from tracker.schema import partition_key
from tracker.settings import Settings
from tracker.streams.app import REWIND_CHECK_SECONDS
from tracker.streams.positions import STALL_SECONDS

pytestmark = pytest.mark.integration


def decision(site_id: str, visitor_id: str, decision_id: str, offer_id: str, ts: int) -> dict:
    """A record of the decisions topic as the offer API writes it (the fields the join reads)."""
    return {
        "schema_version": 2,
        "decision_id": decision_id,
        "site_id": site_id,
        "visitor_id": visitor_id,
        "slot": "home-hero",
        "offer_id": offer_id,
        "ts": ts,
        "propensity": 0.9,
        "holdout": False,
        "model_version": None,
        "features": {"match=interest": 1.0, f"offer={offer_id}": 1.0},
    }


def published_model(settings: Settings) -> dict | None:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        version = client.get(keys.click_model_current(settings.worker_app_id))
        raw = client.get(keys.click_model(settings.worker_app_id, version.decode())) if version else None
    finally:
        client.close()
    return orjson.loads(raw) if raw else None


def test_clicks_on_shown_offers_train_the_published_click_model(stack, site_id: str, tmp_path: Path) -> None:
    settings = isolated_settings(
        stack,
        attribution_window_seconds=1.0,
        attribution_lateness_seconds=0.5,
        session_sweep_seconds=0.5,
        model_publish_seconds=0.5,
    )
    producer = Producer(settings)
    worker = Worker(settings, tmp_path).start()
    try:
        started = now_ms()
        shown = [f"v-{uuid.uuid4().hex[:10]}" for _ in range(8)]
        silent = f"v-{uuid.uuid4().hex[:10]}"  # a decision whose banner was never seen
        records = []
        for n, visitor in enumerate([*shown, silent]):
            record = decision(site_id, visitor, f"d-{n}-{uuid.uuid4().hex[:6]}", "shoes-offer", started)
            records.append(record)
            key = partition_key(site_id, visitor)
            producer.send_raw(settings.topic_decisions, key, orjson.dumps(record))
        # The first decision is delivered twice: it must count once.
        first_key = partition_key(site_id, shown[0])
        producer.send_raw(settings.topic_decisions, first_key, orjson.dumps(records[0]))
        feedback = []
        for n, visitor in enumerate(shown):
            ids = {"decision_id": records[n]["decision_id"], "offer_id": "shoes-offer"}
            feedback.append(tracked(event(site_id, visitor, "offer_impression", started + 100, **ids)))
            if n % 2 == 0:  # every other visitor clicks
                feedback.append(tracked(event(site_id, visitor, "offer_click", started + 200, **ids)))
        producer.send(feedback)

        # Window 1 s + lateness 0.5 s, then the sweep (0.5 s) and the trainer's publication (0.5 s).
        model = wait_for(
            lambda: (m := published_model(settings)) and m["updates"] >= len(shown) and m,
            60,
            "a click model that learned every shown decision",
        )
        assert model["updates"] == len(shown)  # the silent decision taught nothing: never shown
        assert model["clicks"] == len(shown) // 2
        assert decode_snapshot(orjson.dumps(model)).version == model["version"]
        assert worker.metric("tracker_worker_rewards_total") == len(shown) + 1
        assert worker.metric("tracker_worker_rewards_total", clicked="true") == len(shown) // 2
        assert worker.metric("tracker_worker_decisions_total", outcome="ignored") == 1  # the redelivery
        assert worker.metric("tracker_trainer_updates_total", outcome="skipped") == 1
        # No profile appears for the visitor the worker only knows from a decision.
        client = redis.Redis.from_url(settings.redis_url)
        try:
            assert client.get(keys.profile(site_id, silent)) is None
            assert client.get(keys.profile(site_id, shown[0])) is not None
            # Every offer served counts towards the visitor's caps, once (shown[0]'s decision came
            # twice), seen or not; the counts live as long as the profile.
            for vid in (shown[0], shown[1], silent):
                caps = orjson.loads(client.get(keys.caps(site_id, vid)))
                assert caps["today"] == {"shoes-offer": 1}, vid
            assert client.ttl(keys.caps(site_id, silent)) > settings.profile_retention_seconds - 60
        finally:
            client.close()
    finally:
        worker.stop()
        producer.close()


def test_a_restarted_trainer_resumes_from_the_published_model(stack, site_id: str, tmp_path: Path) -> None:
    # Right after a restart Faust's consumer may drop records it fetched; the worker seeks back
    # for them once a partition stalls (STALL_SECONDS, checked every REWIND_CHECK_SECONDS). The
    # lateness covers that, so that a click delayed so is still this decision's (on a loaded CI
    # machine one was not, with 0.2 s, and the test saw 7 updates of 8).
    settings = isolated_settings(
        stack,
        attribution_window_seconds=0.5,
        attribution_lateness_seconds=STALL_SECONDS + REWIND_CHECK_SECONDS + 2.0,
        session_sweep_seconds=0.3,
        model_publish_seconds=0.3,
    )
    producer = Producer(settings)

    def show_and_click(visitors: list[str], at: int) -> None:
        batch = []
        for visitor in visitors:
            record = decision(site_id, visitor, f"d-{uuid.uuid4().hex}", "books-offer", at)
            producer.send_raw(settings.topic_decisions, partition_key(site_id, visitor), orjson.dumps(record))
            ids = {"decision_id": record["decision_id"], "offer_id": "books-offer"}
            batch.append(tracked(event(site_id, visitor, "offer_impression", at + 50, **ids)))
            batch.append(tracked(event(site_id, visitor, "offer_click", at + 80, **ids)))
        producer.send(batch)

    worker = Worker(settings, tmp_path, "first")
    try:
        worker.start()
        show_and_click([f"v-{uuid.uuid4().hex[:10]}" for _ in range(5)], now_ms())
        first = wait_for(lambda: (m := published_model(settings)) and m["updates"] >= 5 and m, 60, "a model")
        worker.stop()
        worker = Worker(settings, tmp_path, "second")
        worker.start()
        show_and_click([f"v-{uuid.uuid4().hex[:10]}" for _ in range(3)], now_ms())
        second = wait_for(
            lambda: (m := published_model(settings)) and m["updates"] >= 8 and m, 60, "the resumed model"
        )
        assert (first["updates"], second["updates"]) == (5, 8)  # learned on from the snapshot
        assert second["clicks"] == 8
    finally:
        worker.stop()
        producer.close()


def test_feedback_after_its_reward_counts_late_not_waiting(stack, site_id: str, tmp_path: Path) -> None:
    """A click that reaches the worker after its decision's reward is lost to learning; the worker
    must say so (``finished``), also once the visitor's join state went back to idle, and a
    click for a decision it never saw stays ``waiting``."""
    settings = isolated_settings(
        stack, attribution_window_seconds=3.0, attribution_lateness_seconds=0.5, session_sweep_seconds=0.3
    )
    producer = Producer(settings)
    worker = Worker(settings, tmp_path).start()
    try:
        started = now_ms()
        visitor = f"v-{uuid.uuid4().hex[:10]}"
        record = decision(site_id, visitor, f"d-{uuid.uuid4().hex}", "shoes-offer", started)
        producer.send_raw(settings.topic_decisions, partition_key(site_id, visitor), orjson.dumps(record))
        ids = {"decision_id": record["decision_id"], "offer_id": "shoes-offer"}
        producer.send([tracked(event(site_id, visitor, "offer_impression", started + 100, **ids))])
        wait_for(lambda: worker.metric("tracker_worker_rewards_total") == 1, 30, "the reward (not clicked)")
        # Made inside the window, delivered after the reward (a client that retried late).
        producer.send([tracked(event(site_id, visitor, "offer_click", started + 1_000, **ids))])
        stranger = {"decision_id": f"d-{uuid.uuid4().hex}", "offer_id": "shoes-offer"}
        producer.send([tracked(event(site_id, visitor, "offer_click", now_ms(), **stranger))])
        wait_for(
            lambda: (
                worker.metric("tracker_worker_feedback_total", kind="click", outcome="finished") == 1
                and worker.metric("tracker_worker_feedback_total", kind="click", outcome="waiting") == 1
            ),
            30,
            "the late click counted as finished, the stranger's as waiting",
        )
        assert worker.metric("tracker_worker_rewards_total", clicked="true") == 0
        assert worker.metric("tracker_worker_rewards_total") == 1, "a reward is emitted once"
    finally:
        worker.stop()
        producer.close()
