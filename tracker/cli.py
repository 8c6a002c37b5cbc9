"""The ``tracker`` command line: the whole local product, or one service at a time.

``tracker up`` starts real Kafka and Redis on loopback, the collector, a stream
worker and the offer API, then drives simulated visitors through it. Each
service also runs on its own (``tracker collector``, ``tracker worker``,
``tracker api``) against the Kafka and Redis named by ``TRACKER_*`` settings.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import orjson
import typer

from tracker.catalogue_cli import offers_app
from tracker.errors import TrackerError
from tracker.settings import Settings, get_settings

app = typer.Typer(
    help="Real-time visitor behaviour tracker and next-best-offer engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(
    help="The embedded local stack (real Kafka and Redis on loopback).", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
app.add_typer(offers_app, name="offers")


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so that `kill` stops the stack as cleanly as Ctrl-C does."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command()
def collector() -> None:
    """Run the collector (POST /v1/events) against the configured Kafka."""
    from tracker.collect.app import serve

    serve(get_settings())


@app.command()
def worker(loglevel: Annotated[str, typer.Option(help="Faust log level.")] = "info") -> None:
    """Run one Faust stream worker; start more to share the partitions."""
    from tracker.streams.app import run_worker

    sys.argv = [sys.argv[0], "worker"]  # Faust's Worker reads its own argv
    run_worker(get_settings(), loglevel=loglevel)


@app.command()
def api() -> None:
    """Run the offer API (GET /v1/offers) against the configured Redis."""
    from tracker.serve.app import serve

    serve(get_settings())


@app.command()
def shop(
    collector_url: Annotated[str, typer.Option(help="Collector base URL as browsers reach it.")] = "",
    api_url: Annotated[str, typer.Option(help="Offer API base URL as browsers reach it.")] = "",
) -> None:
    """Run the demo shop (pages embedding the snippet) on TRACKER_SHOP_HOST:PORT."""
    from tracker.demo.app import serve

    settings = get_settings()
    serve(
        settings,
        collector_url=collector_url or f"http://{settings.collector_host}:{settings.collector_port}",
        api_url=api_url or f"http://{settings.api_host}:{settings.api_port}",
    )


@app.command()
def topics() -> None:
    """Create the project's Kafka topics on the configured broker (idempotent)."""
    from tracker.devstack.topics import create_topics

    settings = get_settings()
    try:
        created = create_topics(settings)
    except TrackerError as exc:
        raise _fail(exc) from exc
    typer.echo(f"created: {', '.join(created) or 'none (all existed)'} on {settings.kafka_bootstrap}")


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option(help="Write here instead of standard output.")] = None,
) -> None:
    """Print the JSON Schema of one tracked event, for integrators."""
    from tracker.schema import event_json_schema

    text = orjson.dumps(event_json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    if output:
        output.write_text(text + "\n")
    else:
        typer.echo(text)


@app.command()
def config(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the reference table (docs/CONFIGURATION.md).")
    ] = False,
) -> None:
    """Print every TRACKER_* setting in effect (secrets masked), or the reference table."""
    from tracker import configdoc

    if markdown:
        typer.echo(configdoc.markdown(), nl=False)
        return
    for name, value in configdoc.effective(get_settings()):
        typer.echo(f"{name}={value}")


@app.command("access-link")
def access_link(
    site: Annotated[str, typer.Option(help="Site id.")],
    visitor: Annotated[str, typer.Option(help="Visitor id.")],
    ttl: Annotated[int, typer.Option(min=60, help="Seconds the link stays valid.")] = 3600,
    base_url: Annotated[str, typer.Option(help="Public URL of the offer API.")] = "",
) -> None:
    """Print a signed GET /v1/me link letting one visitor read their own profile."""
    import time

    from tracker.serve.access import access_link as make_link

    settings = get_settings()
    if not settings.access_signing_key:
        raise _fail(ValueError("TRACKER_ACCESS_SIGNING_KEY is empty; set it to sign access links"))
    base = base_url or f"http://{settings.api_host}:{settings.api_port}"
    typer.echo(make_link(base, site, visitor, int(time.time()) + ttl, settings.access_signing_key))


@stack_app.command("prepare")
def stack_prepare() -> None:
    """Download the Kafka jars and install redis-server, starting nothing."""
    from tracker.devstack.stack import prepare

    try:
        libs = prepare(get_settings())
    except TrackerError as exc:
        raise _fail(exc) from exc
    typer.echo(f"Kafka jars ready in {libs}; redis-server installed.")


@stack_app.command("run")
def stack_run(
    kafka_port: Annotated[int, typer.Option(help="Kafka port; 0 picks a free one.")] = 9092,
    redis_port: Annotated[int, typer.Option(help="Redis port; 0 picks a free one.")] = 6379,
) -> None:
    """Run Kafka and Redis only, until Ctrl-C (for running services by hand)."""
    from tracker.devstack.stack import LocalStack

    stack = LocalStack(settings=get_settings(), kafka_port=kafka_port, redis_port=redis_port)
    try:
        with _sigterm_as_interrupt(), stack:
            typer.echo(f"export TRACKER_KAFKA_BOOTSTRAP={stack.kafka_bootstrap}")
            typer.echo(f"export TRACKER_REDIS_URL={stack.redis_url}")
            typer.echo("Kafka and Redis are up. Ctrl-C stops them.")
            threading.Event().wait()
    except KeyboardInterrupt:
        typer.echo("stopped.")
    except TrackerError as exc:
        raise _fail(exc) from exc


@app.command()
def up(
    sim: Annotated[bool, typer.Option(help="Drive simulated visitors through the product.")] = True,
    visitors: Annotated[int, typer.Option(min=1, help="Simulated visitors in the first wave.")] = 12,
    rate: Annotated[float, typer.Option(min=0.1, help="Simulated events per second afterwards.")] = 5.0,
    duration: Annotated[
        float, typer.Option(min=0, help="Stop after this many seconds (0: until Ctrl-C).")
    ] = 0,
    kafka_port: Annotated[int, typer.Option(help="Kafka port; 0 picks a free one.")] = 0,
    redis_port: Annotated[int, typer.Option(help="Redis port; 0 picks a free one.")] = 0,
    live: Annotated[
        bool,
        typer.Option(
            help="Show the product's figures from its /metrics: redrawn every 2 s on a terminal, "
            "else one line every 10 s."
        ),
    ] = True,
) -> None:
    """Run the whole product on the local stack: Kafka, Redis, collector, worker, offer API."""
    from tracker.local import run_local_product

    try:
        with _sigterm_as_interrupt():
            run_local_product(
                get_settings(),
                kafka_port=kafka_port,
                redis_port=redis_port,
                simulate=sim,
                visitors=visitors,
                rate=rate,
                duration=duration,
                echo=typer.echo,
                live=live,
            )
    except KeyboardInterrupt:
        typer.echo("\nstopped: every process of the local stack has exited.")
    except TrackerError as exc:
        raise _fail(exc) from exc


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path(
        "var/report/learning-report.html"
    ),
    impressions: Annotated[int, typer.Option(min=100, help="Simulator: impressions to simulate.")] = 40_000,
    seed: Annotated[int, typer.Option(help="Simulator: random seed (same seed, same report).")] = 1,
    drift_at: Annotated[
        int, typer.Option(min=0, help="Simulator: impression at which tastes change (0: never).")
    ] = 25_000,
    checkpoint: Annotated[
        int, typer.Option(min=1, help="Simulator: the 'after N impressions' figures start here.")
    ] = 20_000,
    window: Annotated[int, typer.Option(min=0, help="Impressions per curve point (0: about 40 points).")] = 0,
    realised: Annotated[
        bool, typer.Option("--realised", help="Simulator: plot clicks/impressions, not expected CTR.")
    ] = False,
    from_log: Annotated[
        Path | None,
        typer.Option(help="Report on logged rewards: a JSON-lines file of <app>-rewards records."),
    ] = None,
    from_kafka: Annotated[
        bool, typer.Option("--from-kafka", help="Report on the rewards topic of TRACKER_KAFKA_BOOTSTRAP.")
    ] = False,
    save_log: Annotated[
        Path | None, typer.Option(help="With --from-kafka: also write the records read as JSON lines.")
    ] = None,
    site: Annotated[str | None, typer.Option(help="Logged rewards: only this site.")] = None,
    from_json: Annotated[
        Path | None,
        typer.Option(
            help="A saved simulator report: the JSON of bench/learning_curve.py or "
            "bench/learning_pipeline.py (its first run)."
        ),
    ] = None,
) -> None:
    """Write the learning report (one self-contained HTML page): learning curve vs random, most
    popular and oracle, CTR by visitor type or segment, lift over the holdout. From a simulator
    run (default), a saved one (--from-json FILE, e.g. the run through the real pipeline), or
    from the live product's rewards (--from-log FILE, --from-kafka)."""
    from tracker.report import figures, html, sources

    try:
        if sum((from_log is not None, from_kafka, from_json is not None)) > 1:
            raise ValueError("--from-log, --from-kafka and --from-json are three sources: choose one")
        if from_json is not None:
            data = figures.from_simulation(sources.read_simulation(from_json), expected=not realised)
        elif from_log is not None or from_kafka:
            if from_log is not None:
                records, source = sources.read_jsonl(from_log), f"log file {from_log}"
            else:
                settings = get_settings()
                records = sources.read_rewards_topic(settings)
                source = f"rewards topic on {settings.kafka_bootstrap}"
                if save_log is not None:
                    count = sources.write_jsonl(records, save_log)
                    typer.echo(f"{count:,} reward records written to {save_log}")
            data = figures.from_rewards(records, source=source, site=site, window=window or None)
        else:
            data = figures.from_simulation(
                _simulate(impressions, seed, drift_at, checkpoint, window), expected=not realised
            )
    except (OSError, ValueError, TimeoutError, TrackerError) as exc:
        raise _fail(exc) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html.render(data))
    typer.echo(f"report written to {out}")


def _simulate(impressions: int, seed: int, drift_at: int, checkpoint: int, window: int) -> dict:
    from tracker.report.figures import auto_window
    from tracker.sim.learning import LearningConfig, run_learning

    checkpoint = checkpoint if checkpoint < impressions else impressions // 2
    config = LearningConfig(
        impressions=impressions,
        drift_at=drift_at if 0 < drift_at < impressions else None,
        checkpoint=checkpoint,
        checkpoint_span=min(4_000, max(1, impressions - checkpoint)),
        window=window or auto_window(impressions, points=40, minimum=100),
        seed=seed,
    )
    typer.echo(f"simulating {impressions:,} impressions (seed {seed}; about 1 s per 2,000)...", err=True)
    return run_learning(config)


@app.command()
def simulate(
    collector_url: Annotated[str, typer.Option(help="Base URL of a running collector.")] = "",
    api_url: Annotated[str, typer.Option(help="Base URL of a running offer API.")] = "",
    visitors: Annotated[int, typer.Option(min=1)] = 12,
    rate: Annotated[float, typer.Option(min=0.1)] = 5.0,
    duration: Annotated[float, typer.Option(min=0)] = 60.0,
) -> None:
    """Drive simulated visitors through an already running collector and offer API."""
    import asyncio

    from tracker.sim.driver import run_simulation

    settings = get_settings()
    collector_url = collector_url or f"http://{settings.collector_host}:{settings.collector_port}"
    api_url = api_url or f"http://{settings.api_host}:{settings.api_port}"
    try:
        asyncio.run(
            run_simulation(
                settings,
                collector_url=collector_url,
                api_url=api_url,
                visitors=visitors,
                rate=rate,
                duration=duration,
                echo=typer.echo,
            )
        )
    except KeyboardInterrupt:
        typer.echo("stopped.")


def main() -> None:
    try:
        app()
    except ValueError as exc:  # invalid settings from the environment
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from exc


__all__ = ["Settings", "app", "main"]
