"""Deployment files, validated without a Docker engine or a cluster: the compose file against
the Compose Specification schema, the Kubernetes manifests against the Kubernetes API schemas
(kubernetes-validate), the Dockerfile, the Grafana provisioning, and Prometheus's own checker.
Every TRACKER_* variable they set must be a setting the code knows."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import typer.main
import yaml

from tracker.cli import app as cli_app
from tracker.settings import REPO_ROOT, Settings

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"
SETTINGS_ENV = {f"TRACKER_{name.upper()}" for name in Settings.model_fields}
CLI_COMMANDS = set(typer.main.get_command(cli_app).commands)  # type: ignore[attr-defined]


def tracker_vars(env: dict[str, Any] | list[str] | None) -> set[str]:
    names = env.keys() if isinstance(env, dict) else [item.split("=", 1)[0] for item in env or []]
    return {name for name in names if name.startswith("TRACKER_")}


# --- compose -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def compose_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads((REPO_ROOT / "tests" / "data" / "compose-spec.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert compose_errors(compose) == []


def test_compose_schema_check_catches_mistakes(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["deploy"]["replica"] = 2
    broken["services"]["api"]["healthcheck"]["intervall"] = "5s"
    errors = compose_errors(broken)
    assert any("'replica'" in e for e in errors) and any("'intervall'" in e for e in errors)


def test_compose_runs_the_whole_product(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "redis", "topics", "collector", "worker", "api", "prometheus", "grafana"} <= set(
        services
    )
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft: no ZooKeeper
    assert services["worker"]["deploy"]["replicas"] >= 2
    for name in ("topics", "collector", "worker", "api"):
        service = services[name]
        assert service["command"][0] in CLI_COMMANDS, f"{name}: unknown tracker command {service['command']}"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        if name != "topics":
            assert "healthcheck" in service, f"{name} has no healthcheck"
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_sets_only_known_settings(compose: dict[str, Any]) -> None:
    used = set()
    for service in compose["services"].values():
        used |= tracker_vars(service.get("environment"))
    assert used, "the compose file configures nothing?"
    assert used <= SETTINGS_ENV, f"unknown settings: {sorted(used - SETTINGS_ENV)}"


def test_compose_mounts_exist_and_match_the_provisioning(compose: dict[str, Any]) -> None:
    mounts: dict[str, dict[str, str]] = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
                mounts.setdefault(name, {})[source] = target
    assert mounts["prometheus"]["./prometheus"] == "/etc/prometheus"
    assert mounts["grafana"]["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/tracker.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["grafana"]["./grafana/dashboards"]
    assert (
        mounts["api"]["./catalogue.yaml"]
        == compose["services"]["api"]["environment"]["TRACKER_CATALOGUE_PATH"]
    )


# --- Kubernetes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    """Every resource listed by kustomization.yaml (read directly: no kubectl needed)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = []
    for name in kustomization["resources"]:
        resources += [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    return resources


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def test_manifests_match_the_kubernetes_api_schemas(manifests: list[dict[str, Any]]) -> None:
    errors = []
    for manifest in manifests:
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{manifest['kind']}/{manifest['metadata']['name']}: {exc.message}")
    assert errors == []


def test_schema_check_catches_mistakes(manifests: list[dict[str, Any]]) -> None:
    deployment = copy.deepcopy(by_kind(manifests, "Deployment")["tracker-api"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_service_has_probes_resources_and_known_settings(manifests: list[dict[str, Any]]) -> None:
    deployments = by_kind(manifests, "Deployment")
    assert set(deployments) == {"tracker-api", "tracker-collector", "tracker-worker"}
    for name, deployment in deployments.items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container["args"][0] in CLI_COMMANDS
            assert "readinessProbe" in container and "livenessProbe" in container, name
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(requests), name
            assert "memory" in container["resources"]["limits"], name
            assert (
                tracker_vars(container.get("env") and {e["name"]: 1 for e in container["env"]})
                <= SETTINGS_ENV
            )
            refs = {ref["configMapRef"]["name"] for ref in container["envFrom"] if "configMapRef" in ref}
            assert refs == {"tracker-config"}
    config = by_kind(manifests, "ConfigMap")["tracker-config"]["data"]
    assert set(config) <= SETTINGS_ENV, f"unknown settings: {sorted(set(config) - SETTINGS_ENV)}"
    Settings(
        **{key.removeprefix("TRACKER_").lower(): value for key, value in config.items()}, admin_token="x" * 32
    )


def test_api_and_workers_scale_horizontally(manifests: list[dict[str, Any]]) -> None:
    deployments = by_kind(manifests, "Deployment")
    targets = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa
        for hpa in by_kind(manifests, "HorizontalPodAutoscaler").values()
    }
    assert {"tracker-api", "tracker-worker"} <= set(targets)
    for name, hpa in targets.items():
        assert name in deployments
        assert hpa["spec"]["minReplicas"] >= 2
    partitions = int(by_kind(manifests, "ConfigMap")["tracker-config"]["data"]["TRACKER_TOPIC_PARTITIONS"])
    # A worker beyond the partition count would get no partition: never scale past it.
    assert targets["tracker-worker"]["spec"]["maxReplicas"] <= partitions


def test_pods_are_scraped_where_they_serve_metrics(manifests: list[dict[str, Any]]) -> None:
    for name, deployment in by_kind(manifests, "Deployment").items():
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        ports = {p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) in ports, name


# --- Dockerfile ----------------------------------------------------------------------


def test_dockerfile_copies_what_exists_and_runs_unprivileged() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.MULTILINE):
        for source in line.split()[:-1]:
            assert (REPO_ROOT / source).exists(), f"Dockerfile copies missing {source}"
    users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["tracker"\]$', text, flags=re.MULTILINE)
    assert json.loads(re.search(r"^CMD (.+)$", text, flags=re.MULTILINE)[1])[0] in CLI_COMMANDS
    env_names = set(re.findall(r"\b(TRACKER_[A-Z_]+)=", text))
    assert env_names and env_names <= SETTINGS_ENV, sorted(env_names - SETTINGS_ENV)


# --- Grafana ---------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana/dashboards/tracker-overview.json").read_text())


def test_dashboard_uses_the_provisioned_datasource() -> None:
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    panels = [p for p in dashboard()["panels"] if p["type"] != "row"]
    for panel in panels:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid and target["expr"].strip()
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("what", "metric"),
    [
        ("events in", "tracker_collector_events_total"),
        ("events out", "tracker_worker_events_total"),
        ("consumer lag", "tracker_worker_consumer_lag_messages"),
        ("collector latency", "tracker_collector_request_duration_seconds_bucket"),
        ("offer API latency", "tracker_offer_http_request_duration_seconds_bucket"),
        ("error rates", "tracker_offer_http_requests_total"),
        ("decisions by outcome", "tracker_offer_requests_total"),
        ("CTR policy vs holdout", 'tracker_worker_rewards_total{impressed="true",clicked="true"}'),
        ("dead letters", 'outcome="rejected"'),
    ],
)
def test_dashboard_has_the_panels_ops_need(what: str, metric: str) -> None:
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    assert any(metric in expr for expr in exprs), f"no panel shows {what}"


# --- Prometheus ------------------------------------------------------------------------


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: run scripts/bootstrap.sh (installs Debian's prometheus)")
    return found


def test_promtool_accepts_the_rules_and_the_config() -> None:
    rules = sorted(str(p) for p in (DEPLOY / "prometheus/rules").glob("*.yml"))
    checked = subprocess.run(
        [promtool(), "check", "rules", *rules], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = subprocess.run(
        [promtool(), "check", "config", str(DEPLOY / "prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: rate(x[5m] > 1\n")
    checked = subprocess.run(
        [promtool(), "check", "rules", str(bad)], capture_output=True, text=True, check=False
    )
    assert checked.returncode != 0
