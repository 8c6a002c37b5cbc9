"""The live view of ``tracker up``: its figures from metric snapshots, and one real scrape."""

from __future__ import annotations

import io
import math

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tracker.collect.metrics import CollectorMetrics
from tracker.devstack.process import free_port
from tracker.live import figures as fig
from tracker.live.figures import compute, histogram_quantile
from tracker.live.scrape import Snapshot, merge, parse, scrape
from tracker.live.view import LiveBlock, render_block, render_line
from tracker.serve.metrics import OfferMetrics
from tracker.streams import metrics as worker_metrics

INF = math.inf


def hist(name: str, buckets: dict[str, float]) -> Snapshot:
    """A label-less histogram's cumulative buckets as a snapshot."""
    return {
        name + "_bucket": [({"le": le}, count) for le, count in buckets.items()],
        name + "_count": [({}, buckets["+Inf"])],
    }


def worker_events(**counts: float) -> Snapshot:
    """``type__outcome=count`` -> the worker's events counter."""
    series = []
    for key, value in counts.items():
        event_type, outcome = key.split("__")
        series.append(({"type": event_type, "outcome": outcome}, value))
    return {fig.WORKER_EVENTS: series}


# --- rates ------------------------------------------------------------------------------------


def test_collector_rate_counts_accepted_events_only() -> None:
    before = {
        fig.COLLECTOR_EVENTS: [
            ({"outcome": "accepted", "reason": "none"}, 100.0),
            ({"outcome": "rejected", "reason": "schema"}, 5.0),
        ]
    }
    after = {
        fig.COLLECTOR_EVENTS: [
            ({"outcome": "accepted", "reason": "none"}, 120.0),
            ({"outcome": "rejected", "reason": "schema"}, 45.0),
        ]
    }
    assert compute(before, after, 2.0).collector_events_per_s == pytest.approx(10.0)


def test_worker_rate_sums_every_type_and_outcome_and_counts_new_series_from_zero() -> None:
    before = worker_events(page_view__applied=10)
    after = worker_events(page_view__applied=14, product_view__applied=4, page_view__duplicate=2)
    assert compute(before, after, 2.0).worker_events_per_s == pytest.approx(5.0)


def test_counter_reset_counts_from_zero() -> None:
    # The worker restarted: its counter went from 500 back to 30 -> 30 events this interval.
    before = worker_events(page_view__applied=500)
    after = worker_events(page_view__applied=30)
    assert compute(before, after, 3.0).worker_events_per_s == pytest.approx(10.0)


def test_missing_metrics_are_unknown_not_zero() -> None:
    up = worker_events(page_view__applied=5)
    figures = compute(up, {}, 2.0)  # the worker stopped answering
    assert figures.worker_events_per_s is None
    assert figures.collector_events_per_s is None
    assert figures.consumer_lag is None
    assert figures.freshness_p99 is None
    assert figures.offers_per_s is None and figures.offer_p99 is None
    assert figures.offer_shares == {} and figures.ctr is None and figures.ctr_window is None
    assert compute({}, up, 2.0).worker_events_per_s is None  # no earlier reading: no rate yet
    assert "-" in render_line(figures) and all("-" in text for text, _ in render_block(figures)[1:])


def test_consumer_lag_sums_partitions() -> None:
    lag = {
        fig.CONSUMER_LAG: [
            ({"topic": "events", "partition": "0"}, 3.0),
            ({"topic": "events", "partition": "1"}, 4.0),
        ]
    }
    assert compute(lag, lag, 2.0).consumer_lag == 7.0


# --- histogram quantile -----------------------------------------------------------------------


def test_histogram_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    # Over the interval: 0 in (0, 0.1], 40 in (0.1, 0.5], 60 in (0.5, 1], none above.
    buckets = [(0.1, 0.0), (0.5, 40.0), (1.0, 100.0), (INF, 100.0)]
    # p99: rank 99 falls in (0.5, 1] as its 59th of 60 -> 0.5 + 0.5 * 59/60
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.5 + 0.5 * 59 / 60)
    # p50: rank 50 -> 10th of 60 in (0.5, 1]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.5 + 0.5 * 10 / 60)
    # p25: rank 25 -> 25th of 40 in (0.1, 0.5]
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1 + 0.4 * 25 / 40)


def test_histogram_quantile_edges() -> None:
    assert histogram_quantile(0.5, [(0.1, 100.0), (INF, 100.0)]) == pytest.approx(0.05)  # from 0
    assert histogram_quantile(0.99, [(0.1, 0.0), (1.0, 1.0), (INF, 100.0)]) == 1.0  # +Inf: top bound
    assert histogram_quantile(0.99, [(0.1, 0.0), (INF, 0.0)]) is None  # nothing observed
    assert histogram_quantile(0.99, [(0.1, 5.0), (1.0, 5.0)]) is None  # no +Inf bucket
    assert histogram_quantile(0.99, None) is None


def test_quantile_over_the_interval_uses_bucket_deltas() -> None:
    name = fig.OFFER_DURATION
    before = hist(name, {"0.001": 1000, "0.002": 1000, "0.005": 1000, "+Inf": 1000})
    after = hist(name, {"0.001": 1000, "0.002": 1080, "0.005": 1100, "+Inf": 1100})
    figures = compute(before, after, 2.0)
    # This interval: 80 in (1, 2] ms, 20 in (2, 5] ms; p99 = rank 99 = 19th of 20 in (2, 5] ms.
    # (The 1000 fast ones of earlier intervals must not pull it down.)
    assert figures.offer_p99 == pytest.approx(0.002 + 0.003 * 19 / 20)
    assert figures.offers_per_s == pytest.approx(50.0)


def test_freshness_quantile_survives_a_worker_restart() -> None:
    name = fig.FRESHNESS
    before = hist(name, {"0.05": 900, "0.1": 1000, "+Inf": 1000})
    after = hist(name, {"0.05": 0, "0.1": 10, "+Inf": 10})  # restarted, then 10 in (0.05, 0.1]
    assert compute(before, after, 2.0).freshness_p99 == pytest.approx(0.05 + 0.05 * 9.9 / 10)


# --- offers and click-through -----------------------------------------------------------------


def test_offer_shares_since_start() -> None:
    current = {
        fig.OFFER_REQUESTS: [
            ({"outcome": "personalised"}, 60.0),
            ({"outcome": "holdout"}, 10.0),
            ({"outcome": "default"}, 25.0),
            ({"outcome": "fallback"}, 5.0),
            ({"outcome": "empty"}, 0.0),
        ]
    }
    figures = compute(current, current, 2.0)
    assert figures.offer_shares == pytest.approx(
        {"personalised": 0.6, "holdout": 0.1, "default": 0.25, "fallback": 0.05, "empty": 0.0}
    )
    assert figures.offers_total == 100.0
    assert "personalised 60% holdout 10% default 25% fallback 5%" in render_line(figures)
    assert "empty" not in render_line(figures)  # shown only when it happens


def test_click_through_rate_counts_each_event_once_since_start_and_over_the_window() -> None:
    minute_ago = worker_events(offer_impression__applied=100, offer_click__applied=2)
    before = worker_events(offer_impression__applied=180, offer_click__applied=4)
    after = worker_events(
        offer_impression__applied=200,
        offer_impression__replayed=50,  # redelivered after a restart: already counted
        offer_click__applied=8,
        offer_click__duplicate=3,  # a client retry
    )
    figures = compute(before, after, 2.0, window_start=minute_ago, window=60.0)
    assert (figures.clicks, figures.impressions) == (8.0, 200.0)
    assert figures.ctr == pytest.approx(0.04)
    assert figures.ctr_window == pytest.approx(6 / 100)
    line = render_line(figures)
    assert "CTR 4.0%" in line and "last min 6.0%" in line
    assert "CTR policy - vs holdout -" in line  # no reward yet: unknown, not zero


def test_policy_and_holdout_click_through_rates_come_from_seen_rewards() -> None:
    def rewards(**counts: float) -> dict:
        series = []
        for key, value in counts.items():
            group, impressed, clicked = key.split("__")
            series.append(({"group": group, "impressed": impressed, "clicked": clicked}, value))
        return {fig.REWARDS: series, fig.MODEL_UPDATES: [({}, 130.0)]}

    snapshot = rewards(
        policy__true__true=12,
        policy__true__false=88,
        policy__false__false=40,  # never seen: not in the rate
        holdout__true__true=1,
        holdout__true__false=19,
    )
    figures = compute(snapshot, snapshot, 2.0)
    assert figures.ctr_groups == pytest.approx({"policy": 0.12, "holdout": 0.05})
    assert figures.model_updates == 130.0
    assert "CTR policy 12.0% vs holdout 5.0%, model 130 rewards" in render_line(figures)


def _policy_rewards(seen: float, clicked: float) -> Snapshot:
    return {
        fig.REWARDS: [
            ({"group": "policy", "impressed": "true", "clicked": "true"}, clicked),
            ({"group": "policy", "impressed": "true", "clicked": "false"}, seen - clicked),
            ({"group": "holdout", "impressed": "true", "clicked": "true"}, 50.0),  # not the policy's
        ]
    }


def test_learning_curve_draws_a_point_per_step_of_enough_rewards() -> None:
    curve = fig.LearningCurve(step_seconds=30.0, min_impressions=20, max_points=3)
    curve.add(0.0, _policy_rewards(0, 0))
    curve.add(10.0, _policy_rewards(100, 5))  # not 30 s yet
    assert curve.points == []
    curve.add(30.0, _policy_rewards(100, 5))
    curve.add(60.0, _policy_rewards(110, 6))  # 30 s but only 10 rewards: the step goes on
    curve.add(70.0, _policy_rewards(200, 25))
    assert curve.points == pytest.approx([0.05, 0.2])
    curve.add(75.0, _policy_rewards(20, 4))  # the worker restarted: counting starts again
    curve.add(110.0, _policy_rewards(120, 34))
    curve.add(150.0, _policy_rewards(220, 34))
    assert curve.points == pytest.approx([0.2, 0.3, 0.0])  # the last 3


def test_live_figures_keep_the_previous_snapshot_the_minute_window_and_the_curve() -> None:
    live = fig.LiveFigures(ctr_window=60.0, curve=fig.LearningCurve(step_seconds=30.0, min_impressions=20))

    def snapshot(impressions: float, clicks: float, seen: float, clicked: float) -> Snapshot:
        return worker_events(
            offer_impression__applied=impressions, offer_click__applied=clicks
        ) | _policy_rewards(seen, clicked)

    assert live.add(0.0, snapshot(0, 0, 0, 0)) is None  # one snapshot: no rate yet
    first = live.add(40.0, snapshot(100, 10, 100, 10))
    assert first is not None and first.interval == 40.0 and first.curve == pytest.approx((0.1,))
    later = live.add(100.0, snapshot(300, 20, 300, 20))  # 100 s after the start: the window moved
    assert later is not None and later.interval == 60.0
    assert later.window == 60.0 and later.ctr_window == pytest.approx(10 / 200)
    assert later.ctr == pytest.approx(20 / 300) and later.curve == pytest.approx((0.1, 0.05))


def test_the_curve_line_shows_a_sparkline_from_first_to_last_point() -> None:
    figures = fig.Figures(interval=2.0, curve=(0.03, 0.06, 0.12), curve_step=30.0)
    text, note = render_block(figures)[-1]
    assert text == "  curve     ▃▅█ 3.0% -> 12.0%" and "per 30 s" in note
    empty = render_block(fig.Figures(interval=2.0))[-1][0]
    assert empty.startswith("  curve     -")


def test_no_impressions_means_no_rate() -> None:
    figures = compute(worker_events(page_view__applied=1), worker_events(page_view__applied=2), 2.0)
    assert figures.ctr is None and figures.ctr_window is None


# --- terminal ----------------------------------------------------------------------------------


def test_block_keeps_other_lines_above_it() -> None:
    out = io.StringIO()
    block = LiveBlock(out, lambda message: out.write(message + "\n"))
    block.show([("one", ""), ("two", "note")])
    block.echo("a simulation line")
    text = out.getvalue()
    # Erased (2 lines up, clear), the line printed, the block drawn again under it.
    assert text.endswith("\x1b[2F\x1b[Ja simulation line\none\ntwo\x1b[2mnote\x1b[0m\n")


# --- a real scrape ------------------------------------------------------------------------------


def _worker_registry() -> tuple[CollectorRegistry, Counter, Gauge, Histogram]:
    """The worker's metrics by the worker's own names and buckets, on a private registry
    (the worker registers on the process-wide one, which other tests count on)."""
    registry = CollectorRegistry()
    events = Counter(worker_metrics.EVENTS_PROCESSED._name, "events", ["type", "outcome"], registry=registry)
    lag = Gauge(worker_metrics.CONSUMER_LAG._name, "lag", ["topic", "partition"], registry=registry)
    freshness = Histogram(
        worker_metrics.PROCESSING_LAG._name,
        "freshness",
        buckets=worker_metrics.PROCESSING_LAG._upper_bounds,
        registry=registry,
    )
    return registry, events, lag, freshness


def test_the_worker_exports_the_names_the_figures_read() -> None:
    exported = parse(prometheus_client.generate_latest().decode())
    for name in (fig.WORKER_EVENTS, fig.CONSUMER_LAG, fig.FRESHNESS + "_bucket", fig.REWARDS):
        assert name in exported


def test_scrape_and_figures_against_served_registries() -> None:
    collector, offers = CollectorMetrics(), OfferMetrics(process_collectors=False)
    worker, events, lag, freshness = _worker_registry()
    servers, urls = [], []
    for registry in (collector.registry, offers.registry, worker):
        port = free_port("127.0.0.1")
        servers.append(start_http_server(port, addr="127.0.0.1", registry=registry)[0])
        urls.append(f"http://127.0.0.1:{port}/metrics")
    try:
        before = merge(*(scrape(url) for url in urls))
        assert fig.WORKER_EVENTS in before  # declared, no series yet: counts from zero later

        collector.count_events(20, ["schema", "schema"])
        for _ in range(10):
            events.labels(type="page_view", outcome="applied").inc()
            freshness.observe(0.03)  # in (0.025, 0.05]
        events.labels(type="offer_impression", outcome="applied").inc(4)
        events.labels(type="offer_click", outcome="applied").inc()
        lag.labels(topic="events", partition="0").set(3)
        for _ in range(8):
            offers.outcome("personalised").inc()
            offers.duration.observe(0.0015)  # in (1, 2] ms
        for _ in range(2):
            offers.outcome("default").inc()
            offers.duration.observe(0.0015)

        after = merge(*(scrape(url) for url in urls))
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()

    figures = compute(before, after, 2.0)
    assert figures.collector_events_per_s == pytest.approx(10.0)
    assert figures.worker_events_per_s == pytest.approx(7.5)  # 15 events
    assert figures.consumer_lag == 3.0
    assert figures.freshness_p99 == pytest.approx(0.025 + 0.025 * 9.9 / 10)
    assert figures.offers_per_s == pytest.approx(5.0)
    assert figures.offer_p99 == pytest.approx(0.001 + 0.001 * 9.9 / 10)
    assert figures.offer_shares["personalised"] == pytest.approx(0.8)
    assert figures.ctr == pytest.approx(0.25)
    assert scrape(urls[0]) == {}  # stopped: an empty snapshot, no exception


def test_freshness_p99_is_read_near_its_value_at_the_workers_fetch_wait() -> None:
    """With the worker's 0.1 s fetch wait, profiles are written 0.1-0.15 s after the event: the
    worker's freshness buckets must be fine enough there for the p99 the live view and Grafana
    interpolate to stay near that, not read as ~0.24 s (just under the 0.25 s goal)."""
    registry, _, _, freshness = _worker_registry()
    before = parse(prometheus_client.generate_latest(registry).decode())
    for n in range(1000):
        freshness.observe(0.1 + 0.04 * n / 1000)  # 100-140 ms
    now = parse(prometheus_client.generate_latest(registry).decode())
    p99 = histogram_quantile(0.99, fig.bucket_increases(before, now, fig.FRESHNESS))
    assert p99 is not None and 0.1 <= p99 <= 0.15
