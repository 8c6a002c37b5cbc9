"""``tracker up``: the whole product on the embedded local stack, stopped cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tracker.devstack.process import free_port, port_is_free
from tracker.devstack.services import ALL_SERVICES, running_services
from tracker.devstack.stack import LocalStack
from tracker.live.monitor import LiveMonitor, metrics_urls
from tracker.settings import Settings, SiteConfig
from tracker.sim.driver import run_simulation


def _port_or_free(host: str, port: int) -> int:
    """The configured port when it is free, else any free one (so a second `up` still starts)."""
    return port if port and port_is_free(host, port) else free_port(host)


# A demo learns in minutes, not after a production attribution window of 30 minutes; the sweep
# that emits due rewards runs every 5 s (30 s by default, a delay that only a short window notices).
DEMO_LEARNING = {
    "attribution_window_seconds": 60.0,
    "attribution_lateness_seconds": 5.0,
    "session_sweep_seconds": 5.0,
    "model_publish_seconds": 5.0,
}


def demo_learning(settings: Settings) -> Settings:
    """Short attribution and publication periods for ``tracker up``, unless set in the environment."""
    unset = {name: value for name, value in DEMO_LEARNING.items() if name not in settings.model_fields_set}
    return settings.model_copy(update=unset)


def service_ports(settings: Settings) -> Settings:
    """Free ports for every service, and the demo site allowed from the shop's origin."""
    shop_port = _port_or_free(settings.shop_host, settings.shop_port)
    demo_site = SiteConfig(
        id=settings.shop_site_id, origins=[f"http://127.0.0.1:{shop_port}", f"http://localhost:{shop_port}"]
    )
    return settings.model_copy(
        update={
            "collector_port": _port_or_free(settings.collector_host, settings.collector_port),
            "api_port": _port_or_free(settings.api_host, settings.api_port),
            "worker_web_port": _port_or_free(settings.worker_web_host, settings.worker_web_port),
            "shop_port": shop_port,
            # The shop's "Your data" page signs self-access links: give this run a key of its own.
            "access_signing_key": settings.access_signing_key or secrets.token_urlsafe(32),
            "sites": (*[site for site in settings.sites if site.id != settings.shop_site_id], demo_site),
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
    live: bool = False,
) -> None:
    log_dir = log_dir or Path.cwd() / "var" / "log" / time.strftime("%Y%m%d-%H%M%S")
    echo("Starting Kafka (KRaft) and Redis on loopback...")
    with LocalStack(settings=settings, kafka_port=kafka_port, redis_port=redis_port) as stack:
        echo(f"  Kafka  {stack.kafka_bootstrap}\n  Redis  {stack.redis_url}")
        service_settings = demo_learning(service_ports(stack.service_settings()))
        with running_services(ALL_SERVICES, service_settings, log_dir, echo=echo):
            monitor: LiveMonitor | None = None
            try:
                s = service_settings
                echo(
                    "\nThe product is up:\n"
                    f"  demo shop   http://{s.shop_host}:{s.shop_port}/   <- open this in a browser\n"
                    f"  collector   http://{s.collector_host}:{s.collector_port}/v1/events\n"
                    f"  offer API   http://{s.api_host}:{s.api_port}/v1/offers"
                    "?site=demo&visitor=<id>&slot=home-hero\n"
                    f"  metrics     http://{s.collector_host}:{s.collector_port}/metrics, "
                    f"http://{s.api_host}:{s.api_port}/metrics, http://{s.worker_web_host}:{s.worker_web_port}/metrics\n"
                    f"  logs        {log_dir}\n"
                    "Ctrl-C stops everything.\n"
                )
                if live:
                    monitor = LiveMonitor(metrics_urls(s), echo=echo)
                    monitor.start()
                # While the live view draws, the simulation's lines go above its block.
                sim_echo = monitor.echo if monitor is not None else echo
                if simulate:
                    asyncio.run(
                        run_simulation(
                            service_settings,
                            collector_url=f"http://{s.collector_host}:{s.collector_port}",
                            api_url=f"http://{s.api_host}:{s.api_port}",
                            visitors=visitors,
                            rate=rate,
                            duration=duration,
                            echo=sim_echo,
                        )
                    )
                elif duration > 0:
                    time.sleep(duration)
                else:
                    threading.Event().wait()
            finally:
                if monitor is not None:
                    monitor.stop()  # before the services go: no figures from half-stopped ones
