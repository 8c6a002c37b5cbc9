"""Proof that the offer policy learns: click-through-rate learning curves against a hidden truth.

Runs :func:`tracker.sim.learning.run_learning` (pure, in process: the real
policy, rules, caps, holdout, reward join, trainer and snapshots; simulated
shoppers building real profiles; clicks drawn from a hidden ground truth that
drifts) once per seed, and reports for each policy (ours, popular, rules,
random, oracle) the CTR per window of impressions, the ratios at the
checkpoint, the recovery after the drift and the lift over the holdout.

Figures are *expected* CTR (the mean true click probability of the offers
shown: the same thing as clicks / impressions without the coin-flip noise);
the JSON has the realised CTR too.

Usage: ``.venv/bin/python bench/learning_curve.py [--seeds 1,2,3,4] [--impressions 40000]
[--drift-at 25000] [--out var/bench/learning_curve.json]``

The JSON (``--out``) holds every run: config, per-window curves for every
policy (``impressions``, ``ctr``, ``expected_ctr``), checkpoint, drift and lift
figures, ready for a plot.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from tracker.sim.learning import LearningConfig, run_learning

ROOT = Path(__file__).resolve().parent.parent
SHOWN = ("ours", "ours_with_holdout", "popular", "rules", "random", "oracle")


def _run(config: LearningConfig) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    report = run_learning(config)
    return report, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="1,2,3,4", help="comma-separated seeds, one run each")
    parser.add_argument("--impressions", type=int, default=40_000)
    parser.add_argument("--drift-at", type=int, default=25_000, help="0: no drift")
    parser.add_argument("--checkpoint", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=1_000, help="impressions per curve point")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "learning_curve.json")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a LearningConfig or PolicyConfig field, e.g. mean_gap_ms=20 or epsilon_start=0.2 (repeatable)",
    )
    parser.add_argument(
        "--pipeline-timing",
        action="store_true",
        help="simulate bench/learning_pipeline.py's time scale: 50 visits/s, 5 s window, clicks within 2 s",
    )
    args = parser.parse_args(argv)

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    base = LearningConfig(
        impressions=args.impressions,
        drift_at=args.drift_at or None,
        checkpoint=args.checkpoint,
        window=args.window,
    )
    changes = (PIPELINE_TIMING if args.pipeline_timing else []) + args.set
    try:
        base = with_settings(base, changes)
    except ValueError as exc:
        parser.error(str(exc))
    configs = [replace(base, seed=seed) for seed in seeds]
    print(
        f"learning curve: {len(seeds)} run(s) of {args.impressions:,} impressions, slot {base.slot!r}, "
        f"drift at {args.drift_at or 'never'}, seeds {seeds}",
        flush=True,
    )
    started = time.perf_counter()
    with ProcessPoolExecutor(max(1, min(args.jobs, len(configs)))) as pool:
        results = list(pool.map(_run, configs))
    wall = time.perf_counter() - started

    reports = [report for report, _ in results]
    print_curve(reports[0], every=max(1, 2_000 // args.window))
    print_summary(reports, [seconds for _, seconds in results])
    print(f"wall time {wall:.1f} s for {len(seeds)} run(s)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": reports}, indent=1))
    print(f"curves written to {args.out}")
    return 0


# bench/learning_pipeline.py's time scale, simulated: visits 20 ms apart (a shopper's visits fall
# in one session), FAST_LEARNING's 5 s window and 1 s model publication, clicks within 2 s.
PIPELINE_TIMING = [
    "mean_gap_ms=20",
    "attribution_window_ms=5000",
    "max_click_delay_ms=2000",
    "publish_every_ms=1000",
]


def with_settings(config: LearningConfig, changes: list[str]) -> LearningConfig:
    """``config`` with ``NAME=VALUE`` changes to its own or its policy's fields (typed as the default)."""
    own: dict[str, Any] = {}
    policy: dict[str, Any] = {}
    for change in changes:
        name, sep, raw = change.partition("=")
        if not sep:
            raise ValueError(f"--set {change!r}: expected NAME=VALUE")
        for target, values in ((config, own), (config.policy, policy)):
            if name in {f.name for f in fields(target)}:
                current = getattr(target, name)
                kind = type(current) if current is not None else int
                values[name] = None if raw.lower() in ("", "none") else kind(raw)
                break
        else:
            known = sorted(f.name for f in (*fields(config), *fields(config.policy)))
            raise ValueError(f"--set {name!r}: not a setting; one of {', '.join(known)}")
    return replace(config, **own, policy=replace(config.policy, **policy))


def print_curve(report: dict[str, Any], *, every: int) -> None:
    curves = report["curves"]
    seed = report["config"]["seed"]
    print(f"\nexpected CTR per window of {report['config']['window']:,} impressions (seed {seed}):")
    print(f"{'impressions':>11} " + " ".join(f"{name:>17}" for name in SHOWN))
    for i in range(every - 1, len(curves["ours"]), every):
        row = " ".join(f"{curves[name][i]['expected_ctr']:>17.4f}" for name in SHOWN)
        print(f"{curves['ours'][i]['impressions']:>11,} {row}")


def print_summary(reports: list[dict[str, Any]], seconds: list[float]) -> None:
    first = reports[0]["checkpoint"]
    print(
        f"\nafter {first['impressions']:,} impressions (expected CTR over impressions "
        f"{first['window'][0]:,}-{first['window'][1]:,}); 'ours' excludes the holdout group:"
    )
    print(
        f"{'seed':>5} {'ours':>7} {'random':>7} {'popular':>7} {'rules':>7} {'oracle':>7} "
        f"{'x random':>8} {'/oracle':>8} {'/oracle+holdout':>15} {'drift: low':>10} {'recover':>8} "
        f"{'lift':>6} {'restarts':>8} {'purity':>6} {'seconds':>7}"
    )
    for report, secs in zip(reports, seconds, strict=True):
        cp = report["checkpoint"]
        ctr = {
            name: cp["ctr"][name]["expected_ctr"] for name in ("ours", "random", "popular", "rules", "oracle")
        }
        drift = report.get("drift") or {}
        recover = drift.get("impressions_to_recover")
        low = drift.get("vs_oracle_lowest_after")
        print(
            f"{report['config']['seed']:>5} {ctr['ours']:>7.4f} {ctr['random']:>7.4f} {ctr['popular']:>7.4f} "
            f"{ctr['rules']:>7.4f} {ctr['oracle']:>7.4f} {cp['vs_random']:>8.2f} {cp['vs_oracle']:>8.3f} "
            f"{cp['with_holdout_vs_oracle']:>15.3f} {_fmt(low, '.2f'):>10} {_fmt(recover, ','):>8} "
            f"{_fmt(report['lift']['expected_lift'], '+.0%'):>6} "
            f"{_fmt(report.get('exploration_restarts'), 'g'):>8} {_fmt(_purity(report), '.3f'):>6} "
            f"{secs:>7.1f}"
        )
    if len(reports) > 1:
        vs_random = [r["checkpoint"]["vs_random"] for r in reports]
        vs_oracle = [r["checkpoint"]["vs_oracle"] for r in reports]
        recovered = [r["drift"]["impressions_to_recover"] for r in reports if r.get("drift")]
        done = [r for r in recovered if r is not None]
        after = f", after {statistics.mean(done):,.0f} impressions on average" if done else ""
        purities = [p for p in map(_purity, reports) if p is not None]
        if purities:
            print(f"segment purity against the hidden types: mean {statistics.mean(purities):.3f}")
        print(
            f"mean x random {statistics.mean(vs_random):.2f} (min {min(vs_random):.2f}); "
            f"mean /oracle {statistics.mean(vs_oracle):.3f} (min {min(vs_oracle):.3f}); "
            f"recovered to 80 % of oracle in {len(done)}/{len(recovered)} runs{after}"
        )
    print(
        "goal: after 20,000 impressions at least 2x random and at least 80 % of the oracle; "
        "recover after a drift"
    )


def _purity(report: dict[str, Any]) -> float | None:
    """The weighted purity of the simulated worker's segments against the hidden types."""
    return (report.get("segments") or {}).get("weighted_purity")


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())
