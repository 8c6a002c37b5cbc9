"""The project's own services (collector, worker, offer API) as child processes.

``tracker up`` and the end-to-end tests run each service exactly as an operator
would: ``python -m tracker <service>`` with its configuration in ``TRACKER_*``
environment variables.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx

from tracker.devstack.process import ManagedProcess, free_port
from tracker.settings import Settings, settings_env

# In start-up order: the worker first so it is consuming before events arrive.
SERVICES = ("worker", "collector", "api")
# The demo shop is not part of the product, but `tracker up` runs it the same way.
ALL_SERVICES = (*SERVICES, "shop")


def on_free_ports(settings: Settings, *, app: str | None = None) -> Settings:
    """``settings`` with the collector, API and worker web ports on free loopback ports; with
    ``app``, also a worker app id of its own (``<app>-<random>``: its own consumer group, table
    and Redis keys), for benchmarks and tests sharing one Kafka and Redis."""
    update: dict[str, object] = {
        "collector_port": free_port(),
        "api_port": free_port(),
        "worker_web_port": free_port(),
    }
    if app is not None:
        update["worker_app_id"] = f"{app}-{uuid.uuid4().hex[:8]}"
    return settings.model_copy(update=update)


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class ServiceProcess:
    """One service of the product running in its own process."""

    def __init__(self, service: str, settings: Settings, log_dir: Path):
        if service not in ALL_SERVICES:
            raise ValueError(f"unknown service {service!r}; choose one of {', '.join(ALL_SERVICES)}")
        self.service = service
        self.settings = settings
        env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
        self.process = ManagedProcess(
            f"the {service}", [sys.executable, "-m", "tracker", service], log_dir / f"{service}.log", env
        )

    @property
    def ready_url(self) -> str:
        s = self.settings
        return {
            "collector": f"http://{s.collector_host}:{s.collector_port}/readyz",
            "api": f"http://{s.api_host}:{s.api_port}/readyz",
            "worker": f"http://{s.worker_web_host}:{s.worker_web_port}/metrics",
            "shop": f"http://{s.shop_host}:{s.shop_port}/healthz",
        }[self.service]

    def start(self, *, timeout: float = 60.0) -> None:
        self.process.start()
        self.process.wait_until(lambda: _http_ok(self.ready_url), timeout, "ready")

    def stop(self) -> None:
        self.process.stop(timeout=20)


@contextlib.contextmanager
def running_services(
    names: Iterable[str],
    settings: Settings,
    log_dir: Path,
    *,
    timeout: float = 60.0,
    echo: Callable[[str], None] | None = None,
) -> Iterator[list[ServiceProcess]]:
    """Start ``names`` in order, each ready before the next; on leaving (or when one fails to
    start), stop those started, in reverse order. ``echo`` narrates it (``tracker up``)."""
    started: list[ServiceProcess] = []
    try:
        for name in names:
            if echo is not None:
                echo(f"Starting the {name}...")
            service = ServiceProcess(name, settings, log_dir)
            service.start(timeout=timeout)
            started.append(service)
        yield started
    finally:
        if echo is not None:
            echo("Stopping services...")
        for service in reversed(started):
            service.stop()
