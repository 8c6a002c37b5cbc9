"""The learning report as one self-contained HTML page: inline SVG charts, inline CSS, no script.

:func:`render` is pure (a :class:`~tracker.report.figures.LearningReport` in,
text out); every text from the data is escaped.
"""

from __future__ import annotations

from html import escape

from tracker.report.figures import Groups, LearningReport, Lift, wilson
from tracker.report.svg import bar_chart, line_chart

CSS = """
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;max-width:820px;
margin:24px auto;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;margin:8px 0}
td,th{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top}
td.v{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap;font-weight:600}
td.n,p.n{color:#666;font-size:13px}figure{margin:8px 0}svg{max-width:100%;height:auto}
.sub{color:#666;margin:0 0 16px}
"""

HOW_TO_READ_SIMULATOR = """
<p>The simulator shows the <em>same</em> simulated visits to six policies and draws each visitor's
clicks from a hidden ground truth (<code>tracker/sim/ground_truth.py</code>): visitor types that
browse one department mostly, click offers about it often, and click one unrelated
<em>cross-sell</em> offer even more &mdash; something no rule can see, only a learner can find.</p>
<ul>
<li><strong>The learning curve</strong>: CTR per window of impressions. <em>ours</em> is the real
policy (model, exploration, caps; holdout visitors excluded), <em>ours incl. holdout</em> is what the
site sees overall, <em>random</em> picks any eligible offer, <em>most popular</em> shows everyone
the offer with the best CTR so far, <em>rules</em> is the rule-based ranking that served before the
learner, and the <em>oracle</em> knows the hidden truth: the best any policy can do. A policy that
learns starts near random and climbs towards the oracle.</li>
<li><strong>Expected CTR</strong> is the mean true click probability of the offers shown: clicks /
impressions without the coin-flip noise, so small differences are real. The realised CTR is in
the table's notes.</li>
<li><strong>The goal</strong> (issue #6): after 20,000 impressions at least 2x random and at least
80 % of the oracle, measured over the window after the checkpoint.</li>
<li><strong>The drift</strong> (dashed red line): every visitor type's tastes change while its
browsing does not, so what the model knew is now wrong. The curve falls, the trainer notices
(an exploration restart) and the curve climbs back; "impressions to recover" counts until it is
back at 80 % of the oracle.</li>
<li><strong>CTR by visitor type</strong>: the policy never sees the type, only the profile and the
segment built from browsing; the bars show for whom it learned and for whom it did not (yet).</li>
<li><strong>Lift over the holdout</strong>: 5 % of visitors (sticky, by a hash) always get the
slot's default banner. Personalised CTR / holdout CTR - 1, on realised clicks, with a 95 %
confidence interval; an interval above 0 is a lift the run proves.</li>
</ul>
"""

HOW_TO_READ_LOG = """
<p>Built from the product's own rewards: one record per finished decision (the offer API's
decision joined with its impression, click and purchases inside the attribution window), as the
stream worker writes them to the <code>&lt;app&gt;-rewards</code> topic. CTR counts decisions whose
offer was seen.</p>
<ul>
<li><strong>The learning curve</strong>: the policy's CTR per window of impressions, against the
holdout group's CTR since the start (the slot's non-personalised default, the baseline to beat).
A rising policy curve is the model learning from the rewards.</li>
<li><strong>Random, most popular, oracle</strong> need the hidden truth or a replay; they exist only
in a simulator report (<code>tracker report</code> without <code>--from-log</code>).</li>
<li><strong>CTR by segment</strong>: the segment each decision saw (visitors get one once their
profile has enough events; "no segment" is mostly new visitors). Whiskers are 95 % intervals.</li>
<li><strong>Lift over the holdout</strong>: personalised CTR / holdout CTR - 1 with a 95 %
confidence interval. The holdout is small (5 % by default): the interval narrows as rewards
accumulate; an interval entirely above 0 is a proven lift.</li>
</ul>
"""


def _table(rows: list[tuple[str, str, str]]) -> str:
    body = "".join(
        f'<tr><td>{escape(what)}</td><td class="v">{escape(value)}</td><td class="n">{escape(note)}</td></tr>'
        for what, value, note in rows
    )
    return f'<table class="figures"><tbody>{body}</tbody></table>'


def _params(params: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in params)
    return f'<table class="params"><tbody>{body}</tbody></table>'


def _groups(groups: Groups) -> str:
    categories = [f"{c}\n({n:,})" for c, n in zip(groups.categories, groups.impressions, strict=True)]
    svg = bar_chart(
        categories,
        groups.series,
        groups.values,
        errors=groups.errors,
        labels=groups.labels,
        title=groups.title,
    )
    note = f'<p class="n">{escape(groups.note)} (impressions per group in brackets)</p>'
    return f"<figure>{svg}</figure>{note}"


def _lift(lift: Lift) -> str:
    names, values, errors = [], [], []
    for name, (clicks, n) in (("personalised", lift.personalised), ("holdout", lift.holdout)):
        names.append(name)
        values.append(clicks / n if n else None)
        errors.append(wilson(clicks, n) if n else None)
    svg = bar_chart(
        [f"{lift.span}\npersonalised {lift.personalised[1]:,}, holdout {lift.holdout[1]:,} impressions"],
        names,
        [values],
        errors=[errors],
        title="CTR of personalised decisions vs the holdout (realised, 95 % intervals)",
        height=300,
    )
    if lift.lift is None:
        text = "Lift: not known yet (it needs at least one click in each group)."
    else:
        text = (
            f"Lift of personalised over holdout: {lift.lift.value * 100:+.0f} % "
            f"(95 % confidence interval {lift.lift.low * 100:+.0f} % to {lift.lift.high * 100:+.0f} %)."
        )
    return f'<figure>{svg}</figure><p class="lift">{escape(text)}</p>'


def render(report: LearningReport) -> str:
    """The whole page."""
    how = HOW_TO_READ_SIMULATOR if report.source == "simulator" else HOW_TO_READ_LOG
    curve = line_chart(report.curve, title=report.curve_title, markers=report.markers)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{escape(report.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(report.title)}</h1>",
        '<p class="sub">made by <code>tracker report</code>; self-contained: no script, no external file</p>',
        "<h2>Figures</h2>",
        _table(report.rows),
        "<h2>Learning curve</h2>",
        f"<figure>{curve}</figure>",
    ]
    if report.groups is not None:
        parts += ["<h2>CTR by group of visitors</h2>", _groups(report.groups)]
    if report.lift is not None:
        parts += ["<h2>Lift over the holdout</h2>", _lift(report.lift)]
    parts += [f'<p class="n">{escape(note)}</p>' for note in report.notes]
    parts += ["<h2>How to read this report</h2>", how, "<h2>Run parameters</h2>", _params(report.params)]
    parts.append("</body></html>\n")
    return "\n".join(parts)
