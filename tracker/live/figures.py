"""The live view's figures from two metric snapshots: pure functions, no I/O, no clock.

Counters and histograms are cumulative, so every figure "over the last interval"
is a difference between two snapshots, computed as Prometheus' ``increase()`` and
``histogram_quantile()`` would: a counter that went down was reset (its process
restarted) and counts from zero again; a series absent from the older snapshot
is new and counts from zero too. A metric absent from either snapshot (the
service did not answer, or does not export it) gives ``None``, shown as "-".
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tracker.live.scrape import Labels, Snapshot

COLLECTOR_EVENTS = "tracker_collector_events_total"  # {outcome: accepted|rejected|dropped, reason}
WORKER_EVENTS = "tracker_worker_events_total"  # {type, outcome: applied|duplicate|replayed|...}
CONSUMER_LAG = "tracker_worker_consumer_lag_messages"  # {topic, partition}
FRESHNESS = "tracker_worker_event_to_profile_seconds"  # histogram, no labels
OFFER_DURATION = "tracker_offer_request_duration_seconds"  # histogram, no labels
OFFER_REQUESTS = "tracker_offer_requests_total"  # {outcome: personalised|holdout|default|fallback|empty}
REWARDS = "tracker_worker_rewards_total"  # {group: policy|holdout, impressed, clicked}
MODEL_UPDATES = "tracker_trainer_model_updates"  # gauge: rewards in the published click model
GROUPS = ("policy", "holdout")

# Worker outcomes that changed a profile: the event counted once. Duplicates and
# replays (redeliveries) must not inflate the click-through rate.
COUNTED_OUTCOMES = frozenset({"applied", "reprofiled"})

Match = Callable[[Labels], bool]


def _key(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def total(snapshot: Snapshot, name: str, match: Match | None = None) -> float | None:
    """Sum of the series of ``name`` (those ``match`` accepts); ``None`` if ``name`` is absent."""
    if name not in snapshot:
        return None
    return sum(value for labels, value in snapshot[name] if match is None or match(labels))


def increase(previous: Snapshot, current: Snapshot, name: str, match: Match | None = None) -> float | None:
    """How much the counter ``name`` grew between two snapshots, summed over its series."""
    if name not in previous or name not in current:
        return None
    before = {_key(labels): value for labels, value in previous[name]}
    grown = 0.0
    for labels, value in current[name]:
        if match is not None and not match(labels):
            continue
        old = before.get(_key(labels), 0.0)
        grown += value if value < old else value - old  # lower than before: reset, counts from 0
    return grown


def rate(
    previous: Snapshot, current: Snapshot, elapsed: float, name: str, match: Match | None = None
) -> float | None:
    """Per-second increase of a counter over ``elapsed`` seconds."""
    grown = increase(previous, current, name, match)
    return None if grown is None or elapsed <= 0 else grown / elapsed


def bucket_increases(
    previous: Snapshot, current: Snapshot, histogram: str
) -> list[tuple[float, float]] | None:
    """``(upper bound, cumulative count)`` of each bucket over the interval, summed by ``le``."""
    name = histogram + "_bucket"
    if name not in previous or name not in current:
        return None
    bounds = {labels["le"] for labels, _ in current[name] if "le" in labels}
    return sorted(
        (float(le), increase(previous, current, name, lambda labels, le=le: labels.get("le") == le) or 0.0)
        for le in bounds
    )


def histogram_quantile(q: float, buckets: list[tuple[float, float]] | None) -> float | None:
    """The ``q``-quantile of cumulative ``buckets`` as Prometheus' ``histogram_quantile``.

    Linear interpolation inside the bucket holding the rank (observations are assumed
    spread evenly in it); the first bucket starts at 0; a rank in the ``+Inf`` bucket
    gives the highest finite bound. ``None`` when there is no observation to rank.
    """
    if not buckets or len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return None
    # Per-bucket reset handling can leave the counts slightly non-monotonic: even them out.
    bounds, counts, highest = [], [], 0.0
    for bound, count in buckets:
        highest = max(highest, count)
        bounds.append(bound)
        counts.append(highest)
    observations = counts[-1]
    if observations <= 0:
        return None
    rank = q * observations
    b = next(i for i, count in enumerate(counts) if count >= rank)
    if b == len(counts) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, in_bucket = 0.0, counts[b]
    if b > 0:
        start = bounds[b - 1]
        in_bucket -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (bounds[b] - start) * (rank / in_bucket)


def _of_type(event_type: str) -> Match:
    return lambda labels: labels.get("type") == event_type and labels.get("outcome") in COUNTED_OUTCOMES


def click_through(previous: Snapshot | None, current: Snapshot) -> tuple[float | None, float | None]:
    """``(clicks, impressions)`` of offers: since ``previous``, or since start when it is ``None``."""
    if previous is None:
        return total(current, WORKER_EVENTS, _of_type("offer_click")), total(
            current, WORKER_EVENTS, _of_type("offer_impression")
        )
    return increase(previous, current, WORKER_EVENTS, _of_type("offer_click")), increase(
        previous, current, WORKER_EVENTS, _of_type("offer_impression")
    )


def _seen(group: str, clicked: bool | None = None) -> Match:
    """Rewards of offers the visitor saw, of one decision group (and clicked or not, if given)."""
    return lambda labels: (
        labels.get("group") == group
        and labels.get("impressed") == "true"
        and (clicked is None or labels.get("clicked") == str(clicked).lower())
    )


def ctr_by_group(current: Snapshot) -> dict[str, float | None]:
    """Click-through rate of seen offers per decision group, from the rewards emitted so far
    (a decision counts once its attribution window closed)."""
    return {
        group: ratio(total(current, REWARDS, _seen(group, True)), total(current, REWARDS, _seen(group)))
        for group in GROUPS
    }


def policy_seen(current: Snapshot) -> tuple[float | None, float | None]:
    """``(clicks, impressions)`` of the offers the learned policy chose and the visitor saw, from
    the rewards emitted so far (holdout excluded)."""
    return total(current, REWARDS, _seen("policy", True)), total(current, REWARDS, _seen("policy"))


@dataclass
class LearningCurve:
    """The live learning curve: the policy's click-through rate per step of rewards.

    Fed one snapshot per tick (:meth:`add`); a point closes once ``step_seconds`` have passed
    *and* at least ``min_impressions`` rewards of seen offers arrived since the last point, so
    a quiet spell never draws a point from three impressions. Keeps the last ``max_points``.
    """

    step_seconds: float = 30.0
    min_impressions: int = 20
    max_points: int = 30
    points: list[float] = field(default_factory=list)
    _mark: tuple[float, float, float] | None = None  # (time, clicks, impressions) at the step's start

    def add(self, now: float, current: Snapshot) -> None:
        clicks, seen = policy_seen(current)
        if clicks is None or seen is None:
            return
        if self._mark is None or seen < self._mark[2]:  # first tick, or the worker restarted
            self._mark = (now, clicks, seen)
            return
        started, clicks_then, seen_then = self._mark
        if now - started >= self.step_seconds and seen - seen_then >= self.min_impressions:
            self.points.append((clicks - clicks_then) / (seen - seen_then))
            del self.points[: -self.max_points]
            self._mark = (now, clicks, seen)


def ratio(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else part / whole


@dataclass(frozen=True)
class Figures:
    """What the live view shows; ``None`` is unknown (shown as "-"), never zero."""

    interval: float  # seconds between the two snapshots the rates come from
    collector_events_per_s: float | None = None  # accepted by the collector (acknowledged by Kafka)
    worker_events_per_s: float | None = None  # read from the events topic, whatever their outcome
    consumer_lag: float | None = None  # records not committed yet, all partitions
    freshness_p99: float | None = None  # seconds from the collector to the profile write
    offers_per_s: float | None = None
    offer_p99: float | None = None  # seconds to decide an offer
    offer_shares: dict[str, float] = field(default_factory=dict)  # outcome -> share, since start
    offers_total: float | None = None
    clicks: float | None = None  # since start
    impressions: float | None = None
    ctr: float | None = None  # since start
    ctr_window: float | None = None  # over ``window`` seconds
    window: float | None = None
    # From rewards (decisions whose attribution window closed): policy vs holdout, since start.
    ctr_groups: dict[str, float | None] = field(default_factory=dict)
    model_updates: float | None = None  # rewards learned by the published click model
    # The policy's CTR per step of rewards, oldest first (see LearningCurve).
    curve: tuple[float, ...] = ()
    curve_step: float | None = None  # seconds per point


def compute(
    previous: Snapshot,
    current: Snapshot,
    elapsed: float,
    *,
    window_start: Snapshot | None = None,
    window: float | None = None,
) -> Figures:
    """The figures between ``previous`` and ``current`` (``elapsed`` seconds apart); the
    click-through rate also over ``window`` seconds, from ``window_start`` (e.g. a minute ago)."""
    offers_total = total(current, OFFER_REQUESTS)
    shares: dict[str, float] = {}
    if offers_total:
        for labels, value in current[OFFER_REQUESTS]:
            outcome = labels.get("outcome", "?")
            shares[outcome] = shares.get(outcome, 0.0) + value / offers_total
    clicks, impressions = click_through(None, current)
    window_clicks, window_impressions = (
        click_through(window_start, current) if window_start is not None else (None, None)
    )
    return Figures(
        interval=elapsed,
        collector_events_per_s=rate(
            previous, current, elapsed, COLLECTOR_EVENTS, lambda labels: labels.get("outcome") == "accepted"
        ),
        worker_events_per_s=rate(previous, current, elapsed, WORKER_EVENTS),
        consumer_lag=total(current, CONSUMER_LAG),
        freshness_p99=histogram_quantile(0.99, bucket_increases(previous, current, FRESHNESS)),
        offers_per_s=rate(previous, current, elapsed, OFFER_DURATION + "_count"),
        offer_p99=histogram_quantile(0.99, bucket_increases(previous, current, OFFER_DURATION)),
        offer_shares=shares,
        offers_total=offers_total,
        clicks=clicks,
        impressions=impressions,
        ctr=ratio(clicks, impressions),
        ctr_window=ratio(window_clicks, window_impressions),
        window=window if window_start is not None else None,
        ctr_groups=ctr_by_group(current),
        model_updates=total(current, MODEL_UPDATES),
    )


class LiveFigures:
    """Snapshots in, figures out: what the live view keeps between two ticks.

    Feed one snapshot per tick (:meth:`add`); the figures are the rates since the previous
    snapshot, the click-through rate over the last ``ctr_window`` seconds, and the learning
    curve. ``None`` until two snapshots were seen.
    """

    def __init__(self, *, ctr_window: float = 60.0, curve: LearningCurve | None = None) -> None:
        self.ctr_window = ctr_window
        self.curve = curve if curve is not None else LearningCurve()
        # Snapshots of the last ``ctr_window`` seconds, oldest first (the latest is the previous one).
        self._history: deque[tuple[float, Snapshot]] = deque()

    def add(self, now: float, current: Snapshot) -> Figures | None:
        history = self._history
        self.curve.add(now, current)
        if not history:
            history.append((now, current))
            return None
        then, previous = history[-1]
        history.append((now, current))
        while len(history) > 2 and now - history[1][0] >= self.ctr_window:
            history.popleft()
        start, window_start = history[0]
        figures = compute(previous, current, now - then, window_start=window_start, window=now - start)
        return replace(figures, curve=tuple(self.curve.points), curve_step=self.curve.step_seconds)
