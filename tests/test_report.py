"""The learning report (``tracker report``): curves, charts, escaping, and the HTML it writes."""

from __future__ import annotations

import random
import re
import uuid
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from tracker.cli import app
from tracker.report import figures
from tracker.report.html import render
from tracker.report.svg import Series, bar_chart, line_chart
from tracker.settings import Settings, get_settings

HOSTILE = '<script>alert("x")</script> & "quoted"'


# --- curves and intervals -----------------------------------------------------------------------


def test_ctr_curve_per_window_per_group_and_cumulative() -> None:
    # 10 impressions: every third is a holdout one; clicks on even indexes.
    rows = [(i % 3 == 0, i % 2 == 0) for i in range(10)]
    assert figures.ctr_curve(rows, 5) == [(5, 3 / 5), (10, 2 / 5)]
    policy = figures.ctr_curve(rows, 5, holdout=False)
    assert policy == [(5, 2 / 3), (10, 1 / 3)]  # rows 1, 2, 4 then rows 5, 7, 8
    assert figures.ctr_curve(rows, 5, holdout=True, cumulative=True) == [(5, 1 / 2), (10, 2 / 4)]
    # A last partial window counts when at least half full, else not.
    assert [x for x, _ in figures.ctr_curve(rows[:8], 5)] == [5, 8]
    assert [x for x, _ in figures.ctr_curve(rows[:7], 5)] == [5]
    # No row of the group in a window: no point rather than a zero.
    assert figures.ctr_curve([(False, True)] * 4, 2, holdout=True) == []
    with pytest.raises(ValueError):
        figures.ctr_curve(rows, 0)


def test_lift_interval_and_wilson() -> None:
    lift = figures.lift_interval(120, 1000, 40, 1000)
    assert lift is not None
    assert lift.value == pytest.approx(2.0)
    assert lift.low < 2.0 < lift.high and lift.low > 1.0  # clearly positive with these counts
    assert figures.lift_interval(10, 100, 0, 100) is None  # no holdout click: unbounded
    low, high = figures.wilson(0, 50)
    assert low == 0.0 and 0 < high < 0.1
    # Wilson covers the true rate most of the time (a coarse frequentist check, fixed seed).
    rng = random.Random(5)
    covered = 0
    for _ in range(400):
        clicks = sum(rng.random() < 0.08 for _ in range(300))
        low, high = figures.wilson(clicks, 300)
        covered += low <= 0.08 <= high
    assert covered / 400 > 0.9


def test_segment_is_read_from_the_decision_features() -> None:
    assert figures.segment_of({"o": 1.0, "o|seg=12": 1.0}) == 12
    assert figures.segment_of({"o": 1.0, "o|dev=mobile": 1.0}) is None


# --- SVG ----------------------------------------------------------------------------------------


def _polylines(svg: str) -> list[list[str]]:
    return [m.split() for m in re.findall(r'<polyline[^>]* points="([^"]*)"', svg)]


def test_line_chart_draws_one_polyline_per_series_with_every_point() -> None:
    series = [
        Series("ours", tuple((x * 100.0, 0.01 * x) for x in range(1, 11))),
        Series("random", tuple((x * 100.0, 0.05) for x in range(1, 11))),
        Series("oracle", tuple((x * 100.0, 0.16) for x in range(1, 6)), dashed=True),
        Series("empty", ()),
    ]
    svg = line_chart(series, title="t", markers=[(500.0, "drift")])
    lines = _polylines(svg)
    assert [len(points) for points in lines] == [10, 10, 5]  # the empty series is not drawn
    assert svg.count('stroke-dasharray="6 4"') == 2  # the dashed line and its legend entry
    assert ">drift<" in svg
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    # Higher CTR is drawn higher: y decreases along the rising series.
    ys = [float(p.split(",")[1]) for p in lines[0]]
    assert ys == sorted(ys, reverse=True)


def test_bar_chart_draws_a_bar_per_value_and_skips_unknown() -> None:
    svg = bar_chart(
        ["a", "b\n(12)"],
        ["policy", "holdout"],
        [[0.1, 0.05], [0.2, None]],
        errors=[[(0.08, 0.12), None], [(0.15, 0.25), None]],
        title="t",
    )
    assert svg.count('class="bar"') == 3
    assert svg.count('class="whisker"') == 2
    assert ">(12)</tspan>" in svg  # a two-line category label


def test_labels_are_escaped_everywhere() -> None:
    svg = line_chart([Series(HOSTILE, ((0.0, 0.1), (1.0, 0.2)))], title=HOSTILE, markers=[(0.5, HOSTILE)])
    svg += bar_chart([HOSTILE], [HOSTILE], [[0.1]], title=HOSTILE)
    assert "<script" not in svg
    assert "&lt;script&gt;" in svg and "&amp;" in svg and "&quot;quoted&quot;" in svg


# --- from logged rewards ------------------------------------------------------------------------


def _reward(i: int, *, holdout: bool, clicked: bool, segment: int | None, impressed: bool = True) -> dict:
    features = {"offer-a": 1.0, "offer-a|new": 1.0}
    if segment is not None:
        features[f"offer-a|seg={segment}"] = 1.0
    return {
        "schema_version": 1,
        "decision_id": f"d{i:05d}",
        "site_id": "demo",
        "visitor_id": f"v{i % 50}",
        "offer_id": "default-welcome-10" if holdout else "offer-a",
        "slot": "home-hero",
        "decided_at": 1_763_900_000_000 + i * 1000,
        "finished_at": 1_763_900_060_000 + i * 1000,
        "propensity": 1.0 if holdout else 0.9,
        "model_version": f"{i // 100}-abc",
        "holdout": holdout,
        "features": features,
        "impressed": impressed,
        "clicked": clicked and impressed,
        "conversion_value": 10.0 if clicked and i % 7 == 0 else 0.0,
        "reward": 1.0 if clicked and impressed else 0.0,
    }


def _rewards(n: int = 600, seed: int = 2) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        holdout = i % 10 == 0
        p = 0.05 if holdout else 0.05 + 0.15 * i / n  # the policy learns, the holdout stays
        out.append(
            _reward(
                i,
                holdout=holdout,
                clicked=rng.random() < p,
                segment=None if i % 4 == 0 else i % 3,
                impressed=i % 25 != 1,
            )
        )
    rng.shuffle(out)  # the topic is not in decision order across visitors
    return out


def test_report_from_rewards() -> None:
    records = _rewards()
    report = figures.from_rewards(records, source="test", window=100)
    seen = [r for r in records if r["impressed"]]
    assert report.source == "decision log"
    policy = next(s for s in report.curve if s.name == "policy")
    assert [x for x, _ in policy.points] == [100, 200, 300, 400, 500, 576]
    assert policy.points[-1][1] > policy.points[0][1]  # it learned
    lift = report.lift
    assert lift is not None
    assert lift.holdout[1] == sum(r["holdout"] for r in seen)
    assert lift.personalised[0] == sum(r["clicked"] for r in seen if not r["holdout"])
    assert report.groups is not None
    assert report.groups.categories == ["segment 0", "segment 1", "segment 2", "no segment"]
    assert sum(report.groups.impressions) == len(seen)
    rows = {what: value for what, value, _ in report.rows}
    assert rows["decisions finished (rewards)"] == "600"
    assert rows["random / most popular / oracle"] == "-"
    # One site only; none at all is an error that says so.
    assert figures.from_rewards(records, source="t", site="demo").title == report.title
    with pytest.raises(ValueError, match="no rewards"):
        figures.from_rewards(records, source="t", site="elsewhere")


# --- the page and the command -------------------------------------------------------------------


class _Tags(HTMLParser):
    VOID = {"meta", "br", "img", "input", "link", "hr", "col", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.seen.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.seen.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def assert_self_contained_html(text: str) -> _Tags:
    assert text.startswith("<!doctype html>")
    parser = _Tags()
    parser.feed(text)
    parser.close()
    assert parser.problems == [] and parser.stack == [], (parser.problems, parser.stack)
    for forbidden in ("script", "link", "img", "iframe"):
        assert forbidden not in parser.seen, f"<{forbidden}> in a self-contained report"
    assert not re.search(r'(src|href)="(https?:)?//', text), "no external resource"
    assert "url(http" not in text
    return parser


def test_rendered_page_escapes_the_data() -> None:
    report = figures.from_rewards(
        [_reward(i, holdout=i % 5 == 0, clicked=i % 3 == 0, segment=1) for i in range(100)],
        source=HOSTILE,
    )
    text = render(report)
    assert_self_contained_html(text)
    assert HOSTILE not in text and "&lt;script&gt;alert" in text


def test_command_writes_a_self_contained_report_of_a_small_simulator_run(tmp_path: Path) -> None:
    out = tmp_path / "report" / "learning.html"
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--out",
            str(out),
            "--impressions",
            "2000",
            "--drift-at",
            "1500",
            "--checkpoint",
            "1000",
            "--window",
            "250",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    parser = assert_self_contained_html(text)
    assert parser.seen.count("svg") == 3  # learning curve, by visitor type, lift
    lines = _polylines(text)
    assert len(lines) == 6 and all(len(points) == 8 for points in lines)  # 6 policies, 2,000 / 250
    for expected in (
        "How to read this report",
        "seed</th><td>3",
        "ours / random",
        "drift",
        "lift of personalised",
    ):
        assert expected in text, expected
    assert text.count('class="bar"') == 6 * 5 + 2  # 6 visitor types x 5 policies, and the lift's two


def test_command_renders_a_saved_simulator_report(tmp_path: Path) -> None:
    from tracker.sim.learning import LearningConfig, run_learning

    run = run_learning(
        LearningConfig(
            impressions=1_000, drift_at=None, checkpoint=500, checkpoint_span=500, window=250, seed=5
        )
    )
    saved = tmp_path / "learning_pipeline.json"
    saved.write_bytes(orjson.dumps({"runs": [run]}))
    out = tmp_path / "saved.html"
    result = CliRunner().invoke(app, ["report", "--from-json", str(saved), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert_self_contained_html(text)
    assert all(len(points) == 4 for points in _polylines(text))  # 1,000 / 250 per policy
    assert "seed</th><td>5" in text

    saved.write_text('{"runs": [{"not": "a report"}]}')
    result = CliRunner().invoke(app, ["report", "--from-json", str(saved), "--out", str(out)])
    assert result.exit_code == 1 and "not a simulator report" in result.output
    result = CliRunner().invoke(app, ["report", "--from-json", str(saved), "--from-kafka", "--out", str(out)])
    assert result.exit_code == 1 and "choose one" in result.output


def test_command_reports_on_a_rewards_log(tmp_path: Path) -> None:
    log = tmp_path / "rewards.jsonl"
    log.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in _rewards(300)))
    out = tmp_path / "live.html"
    result = CliRunner().invoke(app, ["report", "--from-log", str(log), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert_self_contained_html(out.read_text())
    assert "decision log, 300 rewards" in out.read_text()

    log.write_text('{"not": "a reward"}\n')
    result = CliRunner().invoke(app, ["report", "--from-log", str(log), "--out", str(out)])
    assert result.exit_code == 1


@pytest.mark.integration
def test_command_reads_the_rewards_topic(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kafka import KafkaProducer

    from tracker.kafka_admin import TopicShape, ensure_topics
    from tracker.streams.app import rewards_topic_name

    s = settings.model_copy(update={"worker_app_id": f"report-{uuid.uuid4().hex[:8]}"})
    topic = rewards_topic_name(s)
    ensure_topics(s, {topic: TopicShape(1)}, client_id="test-report", purpose="create a rewards topic")
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    records = _rewards(120)
    for record in records:
        producer.send(topic, orjson.dumps(record))
    producer.flush()
    producer.close()

    out, saved = tmp_path / "live.html", tmp_path / "saved.jsonl"
    monkeypatch.setenv("TRACKER_KAFKA_BOOTSTRAP", s.kafka_bootstrap)
    monkeypatch.setenv("TRACKER_WORKER_APP_ID", s.worker_app_id)
    get_settings.cache_clear()  # the command reads the settings once per process
    try:
        result = CliRunner().invoke(
            app, ["report", "--from-kafka", "--save-log", str(saved), "--out", str(out)]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "decision log, 120 rewards" in out.read_text()
    assert len(saved.read_text().splitlines()) == 120
