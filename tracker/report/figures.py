"""What the learning report shows, computed from a simulator run or from logged rewards (pure, no I/O).

Two sources, one shape (:class:`LearningReport`):

- :func:`from_simulation`: the plain-data report of
  :func:`tracker.sim.learning.run_learning`. Every policy saw the same visits,
  and the hidden truth is known: curves of ours vs random / most popular /
  rules / oracle, CTR per hidden visitor type, ratios at the checkpoint,
  recovery after the drift, lift over the holdout;
- :func:`from_rewards`: the records of the ``<app>-rewards`` topic
  (:meth:`tracker.models.rewards.Reward.to_dict`), one per finished decision,
  as the live product emits them. Only our policy and the holdout group were
  served, so there is no random, popular or oracle curve: the curve is our
  policy's CTR per window of impressions against the holdout's CTR so far,
  and "by segment" uses the segment the decision saw (from its features).

CTR is clicks / impressions of decisions whose offer was seen. Intervals are
95 % by default: Wilson for a rate, Katz's log method for a ratio of rates
(the lift).

>>> lift_interval(60, 1000, 20, 1000).value
2.0
>>> [round(v, 3) for v in wilson(5, 100)]
[0.022, 0.112]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracker.models.rewards import Reward
from tracker.report.svg import Series

Z95 = 1.96
SIM_POLICIES = ("ours", "ours_with_holdout", "popular", "rules", "random", "oracle")
SIM_LABELS = {
    "ours": "ours (holdout excluded)",
    "ours_with_holdout": "ours incl. holdout",
    "popular": "most popular",
    "rules": "rules (before the learner)",
    "random": "random",
    "oracle": "oracle (knows the truth)",
}


@dataclass(frozen=True, slots=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Lift:
    """Personalised decisions vs the holdout group (who always get the default)."""

    personalised: tuple[int, int]  # (clicks, impressions)
    holdout: tuple[int, int]
    lift: Interval | None  # relative: 0.5 is +50 %
    span: str
    expected_lift: float | None = None  # simulator only: from true click probabilities


@dataclass(frozen=True, slots=True)
class Groups:
    """CTR per group of visitors (bars): ``values[category][series]``."""

    title: str
    categories: list[str]
    series: list[str]
    labels: list[str]
    values: list[list[float | None]]
    impressions: list[int]
    errors: list[list[tuple[float, float] | None]] | None = None
    note: str = ""


@dataclass(frozen=True)
class LearningReport:
    """Everything one HTML report shows; :func:`tracker.report.html.render` draws it."""

    title: str
    source: str
    params: list[tuple[str, str]]
    rows: list[tuple[str, str, str]]  # figures table: what, value, note
    curve: list[Series]
    curve_title: str
    markers: list[tuple[float, str]] = field(default_factory=list)
    groups: Groups | None = None
    lift: Lift | None = None
    notes: list[str] = field(default_factory=list)


def wilson(clicks: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a rate (well-behaved at 0 clicks and small ``n``)."""
    if n <= 0:
        return (0.0, 1.0)
    p = clicks / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def lift_interval(clicks_a: int, n_a: int, clicks_b: int, n_b: int, z: float = Z95) -> Interval | None:
    """Relative lift of rate a over rate b (``a/b - 1``) with Katz's log interval; None without
    a click on both sides (the ratio is then unbounded or undefined)."""
    if min(clicks_a, clicks_b) <= 0 or min(n_a, n_b) <= 0:
        return None
    ratio = (clicks_a / n_a) / (clicks_b / n_b)
    se = math.sqrt(max(0.0, 1 / clicks_a - 1 / n_a + 1 / clicks_b - 1 / n_b))
    return Interval(ratio - 1, ratio * math.exp(-z * se) - 1, ratio * math.exp(z * se) - 1)


def ctr_curve(
    rows: Sequence[tuple[bool, bool]], window: int, *, holdout: bool | None = None, cumulative: bool = False
) -> list[tuple[float, float]]:
    """CTR of ``(holdout, clicked)`` rows (impressions in time order) at the end of each ``window``.

    ``holdout`` keeps one group's rows (None: all); ``cumulative`` counts from the first row
    instead of over the window. x is the number of impressions (all groups) so far; a window
    without a row of the group has no point, and a last partial window counts if at least half full.

    >>> rows = [(False, True), (False, False), (True, False), (False, True)]
    >>> ctr_curve(rows, 2)
    [(2, 0.5), (4, 0.5)]
    >>> ctr_curve(rows, 2, holdout=False, cumulative=True)
    [(2, 0.5), (4, 0.6666666666666666)]
    """
    if window <= 0:
        raise ValueError("window must be positive")
    ends = list(range(window, len(rows) + 1, window))
    if len(rows) % window >= window / 2:
        ends.append(len(rows))
    points: list[tuple[float, float]] = []
    clicks = shown = start = 0
    for end in ends:
        if not cumulative:
            clicks = shown = 0
        for is_holdout, clicked in rows[start:end]:
            if holdout is None or is_holdout == holdout:
                shown += 1
                clicks += clicked
        start = end
        if shown:
            points.append((end, clicks / shown))
    return points


def auto_window(n: int, points: int = 25, minimum: int = 20) -> int:
    """A window giving about ``points`` points, rounded to 1, 2 or 5 times a power of ten.

    >>> auto_window(40_000), auto_window(300), auto_window(10)
    (1000, 20, 20)
    """
    raw = max(minimum, n // max(1, points))
    power = 10 ** math.floor(math.log10(raw))
    return max(minimum, max(m * power for m in (1, 2, 5) if m * power <= raw))


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f} %"


def _signed_pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.0f} %"


def _num(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _lift_note(lift: Lift) -> str:
    if lift.lift is None:
        return f"not known yet: needs a click in each group ({lift.span})"
    low, high = _signed_pct(lift.lift.low), _signed_pct(lift.lift.high)
    return f"95 % CI {low} to {high}; realised clicks, {lift.span}"


# --- from the simulator ---------------------------------------------------------------------------


def from_simulation(report: Mapping[str, Any], *, expected: bool = True) -> LearningReport:
    """The report of one :func:`~tracker.sim.learning.run_learning` run.

    ``expected`` plots expected CTR (mean true click probability of the offers shown, no
    coin-flip noise); False plots realised clicks / impressions.
    """
    config = report["config"]
    metric = "expected_ctr" if expected else "ctr"
    curves = report["curves"]
    series = [
        Series(
            name,
            tuple((float(p["impressions"]), float(p[metric])) for p in curves[name]),
            dashed=name in ("ours_with_holdout", "oracle"),
            width=3.0 if name == "ours" else 2.0,
            label=SIM_LABELS[name],
        )
        for name in SIM_POLICIES
        if name in curves
    ]
    cp = report["checkpoint"]
    markers: list[tuple[float, str]] = [(float(cp["impressions"]), "checkpoint")]
    drift = report.get("drift")
    if drift:
        markers.append((float(drift["at"]), "drift"))

    ctr = {name: cp["ctr"][name] for name in cp["ctr"]}
    span = f"impressions {cp['window'][0]:,}-{cp['window'][1]:,}"
    rows: list[tuple[str, str, str]] = []
    for name in ("ours", "random", "popular", "rules", "oracle", "ours_with_holdout"):
        if name in ctr:
            rows.append(
                (
                    f"CTR {SIM_LABELS[name]}",
                    _pct(ctr[name]["expected_ctr"], 2),
                    f"expected, {span}; realised {_pct(ctr[name]['ctr'], 2)}",
                )
            )
    rows += [
        ("ours / random", f"{_num(cp['vs_random'])}x", "goal: at least 2x"),
        ("ours / oracle (share of the best possible)", _pct(cp["vs_oracle"]), "goal: at least 80 %"),
        ("ours incl. holdout / oracle", _pct(cp["with_holdout_vs_oracle"]), "what the site sees overall"),
        ("ours / most popular", f"{_num(cp['vs_popular'])}x", ""),
    ]
    lift = _sim_lift(report["lift"])
    rows.append(
        ("lift of personalised over holdout", _signed_pct(lift.lift and lift.lift.value), _lift_note(lift))
    )
    rows.append(
        ("lift, expected", _signed_pct(lift.expected_lift), "from true click probabilities, no noise")
    )
    if drift:
        recover = drift["impressions_to_recover"]
        rows += [
            (
                "ours / oracle just before the drift",
                _pct(drift["vs_oracle_before"]),
                f"drift at {drift['at']:,}",
            ),
            ("ours / oracle, lowest after the drift", _pct(drift["vs_oracle_lowest_after"]), ""),
            (
                "impressions to recover 80 % of the oracle",
                "-" if recover is None else f"{recover:,}",
                "-: not within the run" if recover is None else "after the drift",
            ),
            ("ours / oracle at the end", _pct(drift["vs_oracle_at_end"]), ""),
        ]
    rows.append(
        ("exploration restarts", str(report.get("exploration_restarts", "-")), "1: the drift was noticed")
    )

    params = [
        (
            "source",
            "simulator (tracker/sim/learning.py): in process, the real policy, caps, holdout, "
            "reward join, trainer and snapshots",
        ),
        ("seed", str(config["seed"])),
        ("impressions", f"{config['impressions']:,}"),
        ("slot", str(config["slot"])),
        ("curve window", f"{config['window']:,} impressions"),
        ("checkpoint", f"{cp['impressions']:,} ({span})"),
        ("drift at", "never" if config.get("drift_at") is None else f"{config['drift_at']:,}"),
        ("attribution window", f"{config['attribution_window_ms'] / 1000:g} s (simulated time)"),
        ("holdout", f"{config['policy']['holdout_percent']:g} % of visitors"),
        (
            "exploration",
            f"epsilon {config['policy']['epsilon_start']:g} -> {config['policy']['epsilon_min']:g}, "
            f"restart {config['policy']['epsilon_restart']:g}",
        ),
        ("model snapshots published", f"{report.get('snapshots_published', '-')}"),
        ("last model version", str(report.get("model", "-"))),
        ("catalogue", str(config.get("catalogue_path") or "TRACKER_CATALOGUE_PATH (default)")),
    ]
    return LearningReport(
        title=f"Learning report: simulator, seed {config['seed']}, {config['impressions']:,} impressions",
        source="simulator",
        params=params,
        rows=rows,
        curve=series,
        curve_title=f"{'Expected' if expected else 'Realised'} CTR per {config['window']:,} impressions",
        markers=markers,
        groups=_sim_groups(report.get("by_type"), span, metric),
        lift=lift,
    )


def _sim_lift(lift: Mapping[str, Any]) -> Lift:
    def counts(group: Mapping[str, Any]) -> tuple[int, int]:
        n = int(group["impressions"])
        return round(group["ctr"] * n), n

    personalised, holdout = counts(lift["personalised"]), counts(lift["holdout"])
    start, end = lift["impressions"]
    return Lift(
        personalised=personalised,
        holdout=holdout,
        lift=lift_interval(*personalised, *holdout),
        span=f"impressions {start:,}-{end:,}",
        expected_lift=lift.get("expected_lift"),
    )


def _sim_groups(by_type: Mapping[str, Any] | None, span: str, metric: str) -> Groups | None:
    if not by_type:
        return None
    names = [name for name in ("ours", "popular", "rules", "random", "oracle")]
    categories = list(by_type)
    return Groups(
        title=f"CTR by hidden visitor type ({span})",
        categories=categories,
        series=names,
        labels=[SIM_LABELS[name] for name in names],
        values=[[by_type[c][name][metric] for name in names] for c in categories],
        impressions=[int(by_type[c]["impressions"]) for c in categories],
        note="Each visitor type browses one department mostly and has a hidden favourite cross-sell "
        "offer; the policy never sees the type, only the profile and segment it builds.",
    )


# --- from logged rewards --------------------------------------------------------------------------


def segment_of(features: Mapping[str, float]) -> int | None:
    """The segment the decision saw, from its features (``<offer>|seg=<n>``), if it had one.

    >>> segment_of({"run": 1.0, "run|seg=3": 1.0, "run|new": 1.0}), segment_of({"run": 1.0})
    (3, None)
    """
    for name in features:
        _, sep, tail = name.rpartition("|seg=")
        if sep and tail.isdigit():
            return int(tail)
    return None


def from_rewards(
    records: Iterable[Mapping[str, Any]],
    *,
    source: str,
    site: str | None = None,
    window: int | None = None,
) -> LearningReport:
    """The report of logged rewards (``<app>-rewards`` records), optionally of one ``site``."""
    rewards = [Reward.from_dict(r) for r in records]
    if site is not None:
        rewards = [r for r in rewards if r.site_id == site]
    if not rewards:
        raise ValueError("no rewards to report on" + (f" for site {site!r}" if site else ""))
    rewards.sort(key=lambda r: (r.decided_at, r.decision_id))
    seen = [r for r in rewards if r.impressed]
    if not seen:
        raise ValueError(f"none of the {len(rewards)} rewards had its offer seen (no impression)")
    rows = [(r.holdout, r.clicked) for r in seen]
    window = window or auto_window(len(rows))
    policy_curve = ctr_curve(rows, window, holdout=False)
    holdout_curve = ctr_curve(rows, window, holdout=True, cumulative=True)
    overall_curve = ctr_curve(rows, window, cumulative=True)
    series = [
        Series("policy", tuple(policy_curve), width=3.0, label=f"policy, per {window:,} impressions"),
        Series("holdout", tuple(holdout_curve), dashed=True, label="holdout, since start"),
        Series("ours_with_holdout", tuple(overall_curve), dashed=True, label="everyone, since start"),
    ]

    def counts(group: bool) -> tuple[int, int]:
        kept = [clicked for is_holdout, clicked in rows if is_holdout == group]
        return sum(kept), len(kept)

    personalised, holdout = counts(False), counts(True)
    lift = Lift(personalised, holdout, lift_interval(*personalised, *holdout), span="all seen offers")
    first, last = rewards[0].decided_at, rewards[-1].decided_at
    clicks = sum(clicked for _, clicked in rows)
    value = sum(r.conversion_value for r in rewards)
    table = [
        ("decisions finished (rewards)", f"{len(rewards):,}", f"{len(seen):,} with the offer seen"),
        ("clicks", f"{clicks:,}", ""),
        ("CTR everyone", _pct(clicks / len(rows), 2), ""),
        ("CTR policy", _pct(_rate(*personalised), 2), _ci_text(*personalised)),
        ("CTR holdout (the slot's default)", _pct(_rate(*holdout), 2), _ci_text(*holdout)),
        ("lift of personalised over holdout", _signed_pct(lift.lift and lift.lift.value), _lift_note(lift)),
        ("attributed conversion value", f"{value:,.2f}", "purchases after a click, inside the window"),
        ("random / most popular / oracle", "-", "simulator only: a live log has no ground truth to replay"),
    ]
    sites = sorted({r.site_id for r in rewards})
    params = [
        ("source", source),
        ("sites", ", ".join(sites)),
        ("decided between", f"{_utc(first)} and {_utc(last)} (UTC)"),
        ("curve window", f"{window:,} impressions"),
        ("model versions seen", f"{len({r.model_version for r in rewards if r.model_version}):,}"),
        ("offers", ", ".join(sorted({r.offer_id for r in rewards}))),
    ]
    return LearningReport(
        title=f"Learning report: decision log, {len(rewards):,} rewards",
        source="decision log",
        params=params,
        rows=table,
        curve=series,
        curve_title=f"Realised CTR: policy per {window:,} impressions vs holdout",
        groups=_segment_groups(seen),
        lift=lift,
        notes=[
            "Rewards are emitted when a decision's attribution window closes: the last minutes of "
            "a live run are not in the log yet.",
        ],
    )


def _rate(clicks: int, n: int) -> float | None:
    return clicks / n if n else None


def _ci_text(clicks: int, n: int) -> str:
    if not n:
        return "no impressions"
    low, high = wilson(clicks, n)
    return f"{clicks:,}/{n:,}, 95 % CI {low * 100:.1f}-{high * 100:.1f} %"


def _segment_groups(seen: Sequence[Reward]) -> Groups:
    by: dict[int | None, list[Reward]] = {}
    for reward in seen:
        by.setdefault(segment_of(reward.features), []).append(reward)
    keys = sorted(k for k in by if k is not None) + ([None] if None in by else [])
    values: list[list[float | None]] = []
    errors: list[list[tuple[float, float] | None]] = []
    for key in keys:
        row_values: list[float | None] = []
        row_errors: list[tuple[float, float] | None] = []
        for group in (False, True):
            kept = [r.clicked for r in by[key] if r.holdout == group]
            row_values.append(_rate(sum(kept), len(kept)))
            row_errors.append(wilson(sum(kept), len(kept)) if kept else None)
        values.append(row_values)
        errors.append(row_errors)
    return Groups(
        title="CTR by segment (the segment each decision saw)",
        categories=["no segment" if k is None else f"segment {k}" for k in keys],
        series=["policy", "holdout"],
        labels=["policy", "holdout"],
        values=values,
        impressions=[len(by[k]) for k in keys],
        errors=errors,
        note="Whiskers: 95 % Wilson intervals. The holdout is a small share of visitors, so its "
        "bars are wide until many decisions have finished.",
    )


def _utc(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
