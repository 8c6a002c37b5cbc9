"""The local stack: it says clearly what failed, and leaves no process behind."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tracker.devstack import maven
from tracker.devstack.kafka import KafkaBroker
from tracker.devstack.process import ManagedProcess, free_port
from tracker.devstack.redis_server import RedisServer
from tracker.devstack.stack import LocalStack
from tracker.errors import StackError
from tracker.settings import Settings


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_port_in_use_is_named_in_the_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StackError, match=rf"Redis cannot listen on 127.0.0.1:{port}: the port is in use"):
            RedisServer(data_dir=tmp_path, port=port).start()


def test_missing_java_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maven.shutil, "which", lambda name: None)
    with pytest.raises(StackError, match=r"Java is not installed.*openjdk-17"):
        maven.require_java()


def test_missing_maven_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(maven.shutil, "which", lambda name: "/usr/bin/java" if name == "java" else None)
    with pytest.raises(StackError, match="Maven is not installed"):
        maven.resolve_kafka_jars(tmp_path)


def test_unresolvable_artifact_reports_what_maven_said(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text(
        maven.POM.read_text().replace(
            "<version>${kafka.version}</version>", "<version>0.0.0-nonexistent</version>"
        )
    )
    monkeypatch.setattr(maven, "POM", pom)
    with pytest.raises(StackError, match="Maven could not resolve the Kafka broker") as info:
        # Offline against an empty local repository: fails fast, as an unreachable Maven Central does.
        maven.resolve_kafka_jars(
            tmp_path / "cache", extra_args=["-o", f"-Dmaven.repo.local={tmp_path / 'm2'}"]
        )
    assert "Maven said" in str(info.value)
    assert not (maven.kafka_libs_dir(tmp_path / "cache")).exists()


def test_process_that_dies_at_start_shows_its_log(tmp_path: Path) -> None:
    process = ManagedProcess(
        "a doomed service", ["sh", "-c", "echo boom: bad config; exit 3"], tmp_path / "x.log"
    )
    process.start()
    with pytest.raises(
        StackError, match=r"(?s)a doomed service exited before it was ready \(exit code 3\).*boom"
    ):
        process.wait_until(lambda: False, timeout=10, what="ready")


def test_broker_that_never_answers_times_out_with_its_log(tmp_path: Path) -> None:
    # A "broker" that runs but never opens its port: readiness must give up, not hang.
    broker = KafkaBroker(java="java", libs_dir=tmp_path, data_dir=tmp_path)
    process = ManagedProcess("Kafka broker", ["sleep", "30"], tmp_path / "broker.log")
    process.start()
    try:
        with pytest.raises(StackError, match="was not answering metadata requests after 1s"):
            process.wait_until(broker._metadata_answers, timeout=1, what="answering metadata requests")
    finally:
        process.stop()
    assert not process.alive()


@pytest.mark.integration
def test_stack_starts_and_stops_without_leaving_a_process(tmp_path: Path) -> None:
    stack = LocalStack(settings=Settings(environment="test"), kafka_port=free_port(), redis_port=free_port())
    with stack:
        pids = [stack.kafka.pid, stack.redis._process.pid]  # type: ignore[union-attr]
        assert all(pid and _alive(pid) for pid in pids)
        data_dir = stack.data_dir
        assert data_dir.exists()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)
    assert not data_dir.exists()
