"""Proof that the offer policy learns through the real product: collector, Kafka, worker, trainer, API.

Starts Kafka, Redis, the stream worker (with the trainer), the collector and the
offer API as separate processes (as ``tracker up`` does), then drives simulated
shoppers through them over HTTP (:mod:`tracker.sim.pipeline`): their browsing
events go to the collector, each visit asks the offer API for a banner with the
page's context, the banner's impression and (drawn from a hidden truth) its
click go back to the collector. The worker joins decisions with impressions and
clicks, the trainer learns and publishes, the API reloads the model: nothing in
this script touches the model. The same visits are shown, in process, to the
random, most-popular, rule-based and oracle policies.

Times are real, so the product runs with a short attribution window (5 s: the
simulated clicks come within 2 s; 5 s of lateness), emits due rewards within a second (sweep every
1 s), publishes a model every second or 250 rewards and the API picks it up within
half a second; segments are learned and published as in production, every 30 s
(``FAST_LEARNING`` in tracker/sim/pipeline.py).

The default pace, 40 visits/s, is what 2 cores sustain with every service and the simulator on
them (15 minutes for 36,000). Offered more than it can take, the loop queues: with 256 visits in
flight at 100/s, events reached the collector 2-12 s after the simulated browser made them, past
the 6 s of window + lateness it then had, and a fifth of the clicks were lost to learning (counted by the
worker as ``finished``). The report's ``feedback`` section shows whether every banner and
click reached a reward.

Usage::

    .venv/bin/python bench/learning_pipeline.py                       # 36,000 visits, drift at 24,000
    .venv/bin/python bench/learning_pipeline.py --impressions 6000 --drift-at 0

Writes the report (the layout of ``bench/learning_curve.py``'s, with
``"source": "pipeline"``) to ``--out``; ``tracker report --from-json`` renders it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from learning_curve import print_curve, print_summary

from tracker.devstack.services import SERVICES, on_free_ports, running_services
from tracker.devstack.stack import LocalStack
from tracker.live.figures import MODEL_UPDATES, REWARDS, total
from tracker.live.scrape import scrape
from tracker.settings import Settings
from tracker.sim.learning import LearningConfig
from tracker.sim.pipeline import FAST_LEARNING, Pacing, PipelineRun

ROOT = Path(__file__).resolve().parent.parent
FEEDBACK = "tracker_worker_feedback_total"
JOIN_METRICS = (
    "tracker_worker_decisions_total",
    FEEDBACK,
    "tracker_worker_input_",
    REWARDS,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impressions", type=int, default=36_000, help="visits, one offer request each")
    # The checkpoint is the CTR over the 4,000 impressions after 20,000 (the in-process bench's
    # window); the drift comes after it, and leaves 12,000 impressions to recover.
    parser.add_argument("--drift-at", type=int, default=24_000, help="0: no drift")
    parser.add_argument("--checkpoint", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=1_000, help="impressions per curve point")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=40.0, help="visits per second (see above)")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the services, e.g. segments_enabled=false (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "learning_pipeline.json")
    args = parser.parse_args(argv)

    checkpoint = min(args.checkpoint, args.impressions)
    config = LearningConfig(
        impressions=args.impressions,
        drift_at=args.drift_at or None,
        checkpoint=checkpoint,
        checkpoint_span=min(4_000, checkpoint),
        window=args.window,
        seed=args.seed,
        attribution_window_ms=int(FAST_LEARNING["attribution_window_seconds"] * 1000),
    )
    pacing = Pacing(visits_per_second=args.rate, concurrency=args.concurrency)
    print(
        f"learning through the real pipeline: {args.impressions:,} visits at {args.rate:g}/s, "
        f"drift at {args.drift_at or 'never'}, seed {args.seed}",
        flush=True,
    )
    with ExitStack() as stack:
        local = stack.enter_context(LocalStack(settings=Settings(environment="development")))
        settings = on_free_ports(local.service_settings(), app="learn")
        overrides = FAST_LEARNING | dict(item.split("=", 1) for item in args.set)
        settings = Settings.model_validate(settings.model_dump() | overrides)  # validates --set values
        log_dir = Path(tempfile.mkdtemp(prefix="bench-learning-pipeline-"))
        stack.enter_context(running_services(SERVICES, settings, log_dir, echo=print))
        collector = f"http://{settings.collector_host}:{settings.collector_port}"
        api = f"http://{settings.api_host}:{settings.api_port}"
        worker_metrics = f"http://{settings.worker_web_host}:{settings.worker_web_port}/metrics"
        run = PipelineRun(config, pacing, collector, api)
        started = time.monotonic()

        def progress(done: int) -> None:
            if done % 5_000 == 0:
                print(f"  {done:,} visits, {time.monotonic() - started:.0f} s", flush=True)

        report = asyncio.run(run.run(progress=progress))
        # Nothing accepted is lost: once the last windows closed, every banner shown is a reward
        # and every click a clicked one.
        time.sleep(settings.attribution_window_seconds + settings.attribution_lateness_seconds + 3)
        worker = scrape(worker_metrics, timeout=5.0)
        report["feedback"] = {
            "banners_shown": sum(1 for p, _, _ in run.ours.values() if p > 0),
            "clicks": sum(1 for _, c, _ in run.ours.values() if c),
            "rewards": total(worker, REWARDS, lambda labels: labels["impressed"] == "true"),
            "rewards_clicked": total(
                worker, REWARDS, lambda labels: labels["impressed"] == labels["clicked"] == "true"
            ),
            # Where the worker's join put what it read: decisions, feedback, input gaps, rewards.
            "worker": {
                name: series
                for name, series in worker.items()
                if name.startswith(JOIN_METRICS) and name.endswith("_total")
            },
        }
        report["trainer_updates"] = total(worker, MODEL_UPDATES)
        report["segments"] = run.segment_purity(_stored_segments(local.redis_url, run))
        report["exploration_restarts"] = _published_restarts(local.redis_url, settings.worker_app_id)
        report["settings_changed"] = args.set
        print(f"services' logs: {log_dir}")

    print_curve(report, every=max(1, 2_000 // args.window))
    print_summary([report], [report["seconds"]])
    segments = report["segments"]
    print(
        f"segments vs hidden types: weighted purity {segments['weighted_purity']}, "
        f"unsegmented {segments['unsegmented']}: {segments['by_segment']}"
    )
    feedback = report["feedback"]
    outcomes = {
        f"{labels['kind']}:{labels['outcome']}": int(value)
        for labels, value in feedback["worker"].get(FEEDBACK, [])
        if value
    }
    print(
        f"feedback: {feedback['banners_shown']:,} banners shown, {feedback['rewards']:,.0f} impressed "
        f"rewards; {feedback['clicks']:,} clicks, {feedback['rewards_clicked']:,.0f} clicked rewards; "
        f"the worker's join: {outcomes}"
    )
    if report["failures"]:
        print(f"visits that failed (counted as no banner): {report['failures']}")
    print(
        f"our decisions by outcome: {report['outcomes']}; "
        f"model versions served: {report['model_versions_served']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": [report]}, indent=1))
    print(f"report written to {args.out}")
    return 0


def _stored_segments(redis_url: str, run: PipelineRun) -> dict[str, int | None]:
    """The segment in each simulated shopper's stored profile (None: not segmented yet)."""
    import orjson
    import redis

    from tracker import keys
    from tracker.sim.shoppers import SITE_ID

    client = redis.Redis.from_url(redis_url)
    ids = [shopper.visitor_id for shopper in run.crowd.shoppers]
    raw = client.mget([keys.profile(SITE_ID, visitor_id) for visitor_id in ids]) if ids else []
    return {v: orjson.loads(r).get("segment") for v, r in zip(ids, raw, strict=True) if r is not None}


def _published_restarts(redis_url: str, app_id: str) -> int | None:
    """How often the trainer restarted exploration (drift), read from the published model."""
    import redis

    from tracker import keys
    from tracker.models.learner import decode_snapshot

    client = redis.Redis.from_url(redis_url)
    version = client.get(keys.click_model_current(app_id))
    raw = client.get(keys.click_model(app_id, version.decode())) if version is not None else None
    return decode_snapshot(raw).restarts if raw is not None else None


if __name__ == "__main__":
    sys.exit(main())
