"""Debian's Prometheus scraping the real services with the project's scrape config and rules.

The collector, a stream worker and the offer API run as separate processes on the session's
Kafka and Redis; Prometheus scrapes them every second with ``deploy/prometheus/prometheus.yml``
(service discovery replaced by the loopback ports; everything else as shipped) and evaluates
``deploy/prometheus/rules/``. After some traffic, every PromQL query of the Grafana dashboard
and every rule must be valid and return data. Bounded: about half a minute.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tracker.devstack.process import ManagedProcess, free_port
from tracker.devstack.services import SERVICES, running_services
from tracker.devstack.topics import create_topics
from tracker.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration

DEPLOY = REPO_ROOT / "deploy"
JOB_PORTS = {"collector": "collector_port", "worker": "worker_web_port", "offer-api": "api_port"}
# What Grafana substitutes before a query reaches Prometheus (1 s scrapes here).
GRAFANA_VARIABLES = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "60s"}
WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def services(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = stack.service_settings(
        "prom",
        # A topic of its own: a new consumer group starts at the oldest event, and the shared
        # topic's history would delay this test's events behind everything earlier tests sent.
        topic_events=f"events-prom-{uuid.uuid4().hex[:8]}",
        allow_unregistered_sites=True,
        # Two API processes on one port, so that the queries also run on the figures every
        # process sums at each scrape (prometheus-client's multiprocess mode).
        api_workers=2,
    )
    create_topics(settings)
    log_dir = tmp_path_factory.mktemp("prom-services")
    with running_services(SERVICES, settings, log_dir, timeout=90):
        yield settings


def project_config(settings: Settings, prometheus_port: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with loopback targets instead of DNS discovery, 1 s scrapes."""
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {*JOB_PORTS, "prometheus"}, "a new scrape job needs a port here"
    for job in config["scrape_configs"]:
        job.pop("dns_sd_configs", None)
        port = (
            getattr(settings, JOB_PORTS[job["job_name"]]) if job["job_name"] in JOB_PORTS else prometheus_port
        )
        job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / pattern) for pattern in config["rule_files"]]
    return config


@pytest.fixture(scope="module")
def prometheus(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: run scripts/bootstrap.sh (installs Debian's prometheus)")
    work = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    (work / "prometheus.yml").write_text(yaml.safe_dump(project_config(services, port)))
    process = ManagedProcess(
        "Prometheus",
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        work / "prometheus.log",
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_until(lambda: _ok(f"{url}/-/ready"), 60, "ready")
        yield url
    finally:
        process.stop(timeout=10)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def send_traffic(settings: Settings, rounds: int) -> None:
    """Events of every kind the dashboard reads (offers shown and clicked, an invalid one), offers."""
    collector = f"http://{settings.collector_host}:{settings.collector_port}"
    api = f"http://{settings.api_host}:{settings.api_port}"
    site = f"prom-{uuid.uuid4().hex[:6]}"
    with httpx.Client(timeout=10) as http:
        for n in range(rounds):
            vid = f"visitor-{uuid.uuid4().hex[:12]}"
            now = int(time.time() * 1000)
            base = {"ts": now, "site_id": site, "visitor_id": vid}
            events = [
                {
                    **base,
                    "event_id": str(uuid.uuid4()),
                    "type": "product_view",
                    "product_id": "p1",
                    "category": "shoes",
                },
                {
                    **base,
                    "event_id": str(uuid.uuid4()),
                    "type": "offer_impression",
                    "decision_id": f"d{n}",
                    "offer_id": "o1",
                },
                {
                    **base,
                    "event_id": str(uuid.uuid4()),
                    "type": "offer_click",
                    "decision_id": f"d{n}",
                    "offer_id": "o1",
                },
                {**base, "event_id": str(uuid.uuid4()), "type": "product_view"},  # invalid: to events.dlq
            ]
            response = http.post(f"{collector}/v1/events", json={"site_id": site, "events": events})
            assert response.status_code == 202, response.text
            for slot in ("home-hero", "no-such-slot"):
                assert (
                    http.get(
                        f"{api}/v1/offers", params={"site": site, "visitor": vid, "slot": slot}
                    ).status_code
                    == 200
                )
            assert http.get(f"{api}/v1/offers", params={"site": site}).status_code == 422
            time.sleep(0.25)


def query(prometheus: str, expr: str) -> tuple[str | None, list[Any]]:
    """(error, result) of an instant query."""
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    if body.get("status") != "success":
        return f"{body.get('errorType')}: {body.get('error')}", []
    return None, body["data"]["result"]


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((DEPLOY / "grafana/dashboards/tracker-overview.json").read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"unknown Grafana variable in {panel['title']!r}: {expr}"
            out.append((panel["title"], expr))
    return out


def rules(prometheus: str) -> list[dict[str, Any]]:
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


_COMPARISON = re.compile(
    r"^(?P<lhs>.+?)\s*(==|!=|>=|<=|>|<)\s*(?P<threshold>-?[0-9.]+(e[+-]?[0-9]+)?)\s*$", re.S
)


def failures(prometheus: str) -> list[str]:
    problems = []
    for title, expr in dashboard_queries():
        error, result = query(prometheus, expr)
        if error or not result:
            problems.append(f"dashboard panel {title!r}: {error or 'no data'}: {expr}")
    loaded = rules(prometheus)
    for rule in loaded:
        if rule["health"] != "ok":
            problems.append(f"rule {rule['name']}: health {rule['health']} {rule.get('lastError', '')}")
        if rule["type"] == "recording":
            watched = rule["name"]
        else:
            match = _COMPARISON.match(rule["query"])
            if match is None:
                problems.append(f"alert {rule['name']}: not `<series> <op> <threshold>`: {rule['query']}")
                continue
            watched = match["lhs"]
        error, result = query(prometheus, watched)
        if error or not result:
            problems.append(f"rule {rule['name']}: {error or 'no data'} for {watched}")
    return problems


def test_dashboard_and_rules_return_data_from_the_real_services(services: Settings, prometheus: str) -> None:
    send_traffic(services, rounds=16)
    deadline = time.monotonic() + WAIT_SECONDS
    while problems := failures(prometheus):
        if time.monotonic() > deadline:
            break
        send_traffic(services, rounds=2)  # keep rate() windows populated while waiting
    assert problems == [], "\n".join(problems)
    assert len(dashboard_queries()) >= 20 and len(rules(prometheus)) >= 15
    up = query(prometheus, "up")[1]
    assert {r["metric"]["job"]: r["value"][1] for r in up} == dict.fromkeys({*JOB_PORTS, "prometheus"}, "1")


def test_promql_errors_are_reported(prometheus: str) -> None:
    """The check above can fail: a broken query is an error, a missing metric is no data."""
    assert query(prometheus, "sum(rate(tracker_offer_requests_total[10s])")[0] is not None
    assert query(prometheus, "tracker_no_such_metric_total") == (None, [])


def test_kubernetes_probe_paths_answer_on_the_real_services(services: Settings) -> None:
    ports = {"tracker-api": services.api_port, "tracker-collector": services.collector_port,
             "tracker-worker": services.worker_web_port}  # fmt: skip
    checked = 0
    for name in ("api.yaml", "collector.yaml", "worker.yaml"):
        for doc in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()):
            if doc["kind"] != "Deployment":
                continue
            container = doc["spec"]["template"]["spec"]["containers"][0]
            for probe in ("readinessProbe", "livenessProbe"):
                path = container[probe]["httpGet"]["path"]
                port = ports[doc["metadata"]["name"]]
                response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
                assert response.status_code == 200, (
                    f"{doc['metadata']['name']} {probe} {path}: {response.status_code}"
                )
                checked += 1
    assert checked == 6
