"""The learning loop closed through the real product: simulated shoppers drive the collector and the
offer API (real processes on the session's Kafka and Redis); the worker joins decisions with
impressions and clicks, the trainer learns and publishes, and the API serves the new models.

A short run (3,600 visits, a minute): long enough for many model versions and for the policy to
have tried each offer with each kind of visitor, too short for the learning curve itself
(``bench/learning_pipeline.py`` measures that over 36,000 visits). The services have topics of
their own, so that earlier tests' records neither delay them nor teach the trainer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tracker import keys
from tracker.devstack.services import SERVICES, running_services
from tracker.settings import Settings
from tracker.sim.learning import LearningConfig
from tracker.sim.pipeline import FAST_LEARNING, Pacing, PipelineRun
from tracker.sim.shoppers import SITE_ID

pytestmark = pytest.mark.integration

VISITS = 3_600


@pytest.fixture(scope="module")
def product(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = stack.service_settings(
        "simpipe", own_topics=True, allow_unregistered_sites=True, **FAST_LEARNING
    )
    log_dir: Path = tmp_path_factory.mktemp("sim-pipeline-logs")
    with running_services(SERVICES, settings, log_dir, timeout=90):
        yield settings


@pytest.fixture(scope="module")
def report(product: Settings) -> dict:
    config = LearningConfig(
        impressions=VISITS, drift_at=None, checkpoint=VISITS, checkpoint_span=1_800, window=200, seed=11
    )
    run = PipelineRun(
        config,
        Pacing(visits_per_second=60.0, concurrency=128),
        f"http://{product.collector_host}:{product.collector_port}",
        f"http://{product.api_host}:{product.api_port}",
    )
    return asyncio.run(asyncio.wait_for(run.run(), timeout=240))


def _worker_metric(settings: Settings, name: str) -> float:
    text = httpx.get(f"http://{settings.worker_web_host}:{settings.worker_web_port}/metrics", timeout=5).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"{name} not exported"
    return values[0]


def _served_model_version(settings: Settings) -> str:
    response = httpx.get(
        f"http://{settings.api_host}:{settings.api_port}/v1/offers",
        params={"site": SITE_ID, "visitor": "model-version-probe", "slot": LearningConfig().slot},
        timeout=5,
    )
    response.raise_for_status()
    return str(response.json()["model_version"])


def test_every_visit_gets_an_answer(report: dict) -> None:
    assert sum(report["outcomes"].values()) == VISITS and not report["failures"]
    assert report["outcomes"].get("personalised", 0) > VISITS // 2


def test_the_trainer_learns_from_the_shown_banners_and_the_api_serves_its_models(
    product: Settings, report: dict
) -> None:
    # Every shown banner's reward arrives once its 5 s window closes: wait for the last ones.
    shown = VISITS - report["outcomes"].get("no_offer", 0)
    deadline = time.monotonic() + 60
    while (learned := _worker_metric(product, "tracker_trainer_model_updates")) < 0.9 * shown:
        assert time.monotonic() < deadline, f"the trainer learned from {learned:.0f} of {shown} banners"
        time.sleep(0.5)
    # During the run: the untrained model first, then at least one the trainer published.
    assert report["model_versions_served"] >= 2
    # Once the trainer has caught up, the API hot-loads its latest model (how many versions fall
    # inside the run itself depends on the machine's speed, so that is not asserted).
    client = redis.Redis.from_url(product.redis_url)
    try:
        deadline = time.monotonic() + 30
        while True:
            published = client.get(keys.click_model_current(product.worker_app_id))
            served = _served_model_version(product)
            if published is not None and served == published.decode():
                break
            assert time.monotonic() < deadline, f"API serves {served}, trainer published {published!r}"
            time.sleep(0.5)
    finally:
        client.close()
    # Versions start with the zero-padded count of rewards learned: the final one is no older.
    assert served >= report["model"]


def test_our_policy_beats_random_on_the_same_visits(product: Settings, report: dict) -> None:
    # In process, at this time scale, seeds 11-16 give 2.0-2.3x random over impressions 1,800-3,600.
    ctr = report["checkpoint"]["ctr"]
    what = ("seconds", "outcomes", "model_versions_served", "model", "failures")
    run = {key: report.get(key) for key in what}
    run["trainer_restarts"] = _worker_metric(product, "tracker_trainer_exploration_restarts_total")
    assert ctr["ours"]["expected_ctr"] > 1.2 * ctr["random"]["expected_ctr"], f"{ctr} {run}"


def test_segment_purity_says_how_well_segments_match_the_hidden_types() -> None:
    run = PipelineRun(LearningConfig(impressions=10, drift_at=None), Pacing(), "http://c", "http://a")
    for step in range(60):
        run.crowd.next_visit(1_763_900_000_000 + step * 1_000)
    shoppers = run.crowd.shoppers
    by_type: dict[str, int] = {}
    segments: dict[str, int | None] = {}
    for shopper in shoppers:  # a perfect clustering: one segment per hidden type
        segments[shopper.visitor_id] = by_type.setdefault(shopper.vtype.name, len(by_type))
    perfect = run.segment_purity(segments)
    assert perfect["weighted_purity"] == 1.0 and perfect["unsegmented"] == 0
    assert sum(s["shoppers"] for s in perfect["by_segment"].values()) == len(shoppers)

    lumped = run.segment_purity({v: 0 for v in segments} | {shoppers[0].visitor_id: None, "stranger": 1})
    assert lumped["unsegmented"] == 1 and list(lumped["by_segment"]) == ["0"]  # strangers ignored
    assert lumped["weighted_purity"] < 1.0
