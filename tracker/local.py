"""``tracker up``: the whole product on the embedded local stack, stopped cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tracker.devstack.process import free_port, port_is_free
from tracker.devstack.services import SERVICES, ServiceProcess
from tracker.devstack.stack import LocalStack
from tracker.settings import Settings
from tracker.sim.driver import run_simulation


def _port_or_free(host: str, port: int) -> int:
    """The configured port when it is free, else any free one (so a second `up` still starts)."""
    return port if port and port_is_free(host, port) else free_port(host)


def service_ports(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "collector_port": _port_or_free(settings.collector_host, settings.collector_port),
            "api_port": _port_or_free(settings.api_host, settings.api_port),
            "worker_web_port": _port_or_free(settings.worker_web_host, settings.worker_web_port),
        }
    )


def run_local_product(
    settings: Settings,
    *,
    kafka_port: int,
    redis_port: int,
    simulate: bool,
    visitors: int,
    rate: float,
    duration: float,
    echo: Callable[[str], None],
    log_dir: Path | None = None,
) -> None:
    log_dir = log_dir or Path.cwd() / "var" / "log" / time.strftime("%Y%m%d-%H%M%S")
    echo("Starting Kafka (KRaft) and Redis on loopback...")
    with LocalStack(settings=settings, kafka_port=kafka_port, redis_port=redis_port) as stack:
        echo(f"  Kafka  {stack.kafka_bootstrap}\n  Redis  {stack.redis_url}")
        service_settings = service_ports(stack.service_settings())
        services = [ServiceProcess(name, service_settings, log_dir) for name in SERVICES]
        started: list[ServiceProcess] = []
        try:
            for service in services:
                echo(f"Starting the {service.service}...")
                service.start()
                started.append(service)
            s = service_settings
            echo(
                "\nThe product is up:\n"
                f"  collector   http://{s.collector_host}:{s.collector_port}/v1/events\n"
                f"  offer API   http://{s.api_host}:{s.api_port}/v1/offers"
                "?site=demo&visitor=<id>&slot=home-hero\n"
                f"  metrics     http://{s.collector_host}:{s.collector_port}/metrics, "
                f"http://{s.api_host}:{s.api_port}/metrics, http://{s.worker_web_host}:{s.worker_web_port}/metrics\n"
                f"  logs        {log_dir}\n"
                "Ctrl-C stops everything.\n"
            )
            if simulate:
                asyncio.run(
                    run_simulation(
                        service_settings,
                        collector_url=f"http://{s.collector_host}:{s.collector_port}",
                        api_url=f"http://{s.api_host}:{s.api_port}",
                        visitors=visitors,
                        rate=rate,
                        duration=duration,
                        echo=echo,
                    )
                )
            elif duration > 0:
                time.sleep(duration)
            else:
                threading.Event().wait()
        finally:
            echo("Stopping services...")
            for service in reversed(started):
                service.stop()
