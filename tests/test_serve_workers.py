"""The offer API as several processes on one port (``TRACKER_API_WORKERS=2``), as an operator
runs it: ``python -m tracker api`` on the session's Kafka and Redis.

A scrape reaches whichever process accepts it, so ``/metrics`` must report every process:
counts summed (those of a worker that died included), versions and process figures per live
worker. Bounded: a few hundred requests and two worker restarts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tracker.devstack.services import running_services
from tracker.settings import Settings, settings_env
from tracker.sim.shoppers import SITE_ID

pytestmark = pytest.mark.integration

WORKERS = 2
REQUESTS = 300
OFFERS = {"handler": "/v1/offers", "method": "GET", "status": "200"}


@pytest.fixture(scope="module")
def api(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = stack.service_settings("workers", api_workers=WORKERS, allow_unregistered_sites=True)
    with running_services(["api"], settings, tmp_path_factory.mktemp("api-workers"), timeout=90):
        yield settings


def _base(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def _scrape(settings: Settings) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of one scrape, by sample name (on a new connection: any worker may answer)."""
    text = httpx.get(f"{_base(settings)}/metrics", headers={"Connection": "close"}, timeout=5).text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    matching = [v for found, v in samples.get(name, []) if all(found.get(k) == w for k, w in labels.items())]
    assert len(matching) == 1, f"{name}{labels}: {len(matching)} series, expected one"
    return matching[0]


def _worker_pids(settings: Settings) -> set[int]:
    return {int(labels["pid"]) for labels, _ in _scrape(settings)["tracker_offer_catalogue_info"]}


def _ask_offers(settings: Settings, count: int, start: int) -> None:
    # A new connection per request, so that both workers accept some of them.
    with httpx.Client(base_url=_base(settings), limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for i in range(start, start + count):
            params = {"site": SITE_ID, "visitor": f"workers-{i:04d}", "slot": "home-hero"}
            assert client.get("/v1/offers", params=params, timeout=5).status_code == 200


def _replace_worker(settings: Settings, pid: int) -> set[int]:
    """SIGKILL one worker; returns the live workers once uvicorn has started its replacement."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        pids = _worker_pids(settings)
        if pid not in pids and len(pids) == WORKERS:
            return pids
        assert time.monotonic() < deadline, f"worker {pid} not replaced: live workers {pids}"
        time.sleep(0.3)


def test_every_scrape_reports_the_requests_of_all_workers_even_dead_ones(api: Settings) -> None:
    before = _value(_scrape(api), "tracker_offer_http_requests_total", **OFFERS)
    _ask_offers(api, REQUESTS, start=0)
    # Ten scrapes, each answered by either worker: all see every request.
    counts = {_value(_scrape(api), "tracker_offer_http_requests_total", **OFFERS) for _ in range(10)}
    assert counts == {before + REQUESTS}
    decided = sum(v for _, v in _scrape(api)["tracker_offer_requests_total"])
    assert decided >= REQUESTS

    # Both workers that served them die and are replaced: their counts stay in the total.
    first = _worker_pids(api)
    assert len(first) == WORKERS
    for pid in first:
        live = _replace_worker(api, pid)
    assert not live & first
    samples = _scrape(api)
    assert _value(samples, "tracker_offer_http_requests_total", **OFFERS) == before + REQUESTS
    assert sum(v for _, v in samples["tracker_offer_requests_total"]) == decided


def test_versions_and_process_figures_are_reported_per_live_worker(api: Settings) -> None:
    samples = _scrape(api)
    pids = {labels["pid"] for labels, _ in samples["tracker_offer_catalogue_info"]}
    assert len(pids) == WORKERS
    for name in ("tracker_offer_catalogue_info", "tracker_offer_model_info"):
        series = samples[name]
        assert {labels["pid"] for labels, _ in series} == pids and all(v == 1 for _, v in series)
        assert len({labels["version"] for labels, _ in series}) == 1  # every worker serves the same
    cpu = samples["process_cpu_seconds_total"]
    assert {labels["pid"] for labels, _ in cpu} == pids and all(v > 0 for _, v in cpu)
    # Gauges that make sense summed or at their worst have one series, not one per worker.
    assert len(samples["tracker_offer_decision_queue_depth"]) == 1
    assert _value(samples, "tracker_offer_redis_breaker_state") == 0

    # A worker that died no longer reports a version, and its replacement does.
    dead = int(sorted(pids)[0])
    live = _replace_worker(api, dead)
    samples = _scrape(api)
    assert {int(labels["pid"]) for labels, _ in samples["tracker_offer_model_info"]} == live
    assert {int(labels["pid"]) for labels, _ in samples["process_cpu_seconds_total"]} == live


def test_workers_that_cannot_start_stop_the_api_with_an_error(stack, tmp_path: Path) -> None:
    settings = stack.service_settings(
        "workers-bad", api_workers=WORKERS, catalogue_source="file", catalogue_path=tmp_path / "missing.yaml"
    )
    env = {**os.environ, **settings_env(settings)}
    result = subprocess.run(
        [sys.executable, "-m", "tracker", "api"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert "missing.yaml" in result.stderr
