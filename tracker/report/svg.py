"""Small, dependency-free SVG charts for the learning report: a line chart and a grouped bar chart.

Pure functions returning SVG text to inline in an HTML page (no script, no
external font or stylesheet). Every label is escaped; coordinates are rounded
to one decimal so the output is small and stable.

>>> svg = line_chart([Series("ours", ((0, 0.1), (1000, 0.2)))], title="CTR <by> window")
>>> svg.count("<polyline"), "CTR &lt;by&gt; window" in svg
(1, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

# One colour per policy name, so every chart of a report agrees; others cycle through EXTRA.
COLOURS = {
    "ours": "#1f5fbf",
    "ours_with_holdout": "#7fa7e0",
    "policy": "#1f5fbf",
    "personalised": "#1f5fbf",
    "holdout": "#d9822b",
    "popular": "#d9822b",
    "rules": "#8e5cb5",
    "random": "#8c8c8c",
    "oracle": "#2e9e5b",
}
EXTRA = ("#c23b4a", "#3aa6a6", "#b8a12b", "#5a5a9e")
FONT = "font-family=\"system-ui,-apple-system,'Segoe UI',sans-serif\""


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a line chart: a name (legend), ``(x, y)`` points, and how to draw it."""

    name: str
    points: tuple[tuple[float, float], ...]
    dashed: bool = False
    width: float = 2.0
    label: str | None = None  # legend text, ``name`` when None


def colour(name: str, index: int = 0) -> str:
    return COLOURS.get(name, EXTRA[index % len(EXTRA)])


def percent(value: float) -> str:
    """Axis label of a rate: ``0.125`` -> ``12.5%`` (no decimals from 10 % up on round ticks)."""
    text = f"{value * 100:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + "%"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[low, high]`` (steps of 1, 2 or 5 times a power of ten).

    >>> nice_ticks(0, 0.17)
    [0.0, 0.05, 0.1, 0.15, 0.2]
    >>> nice_ticks(0, 40000)
    [0.0, 10000.0, 20000.0, 30000.0, 40000.0]
    """
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.999:
        ticks.append(float(round(value, 12)))
        value += step
    return ticks


def _thousands(value: float) -> str:
    return f"{value:,.0f}"


class _Frame:
    """The plot area and its scales."""

    def __init__(self, width: int, height: int, x_ticks: list[float], y_ticks: list[float]) -> None:
        self.left, self.right, self.top, self.bottom = 64, width - 32, 40, height - 88
        self.x0, self.x1 = x_ticks[0], x_ticks[-1]
        self.y0, self.y1 = y_ticks[0], y_ticks[-1]

    def x(self, value: float) -> float:
        return self.left + (value - self.x0) / (self.x1 - self.x0 or 1) * (self.right - self.left)

    def y(self, value: float) -> float:
        return self.bottom - (value - self.y0) / (self.y1 - self.y0 or 1) * (self.bottom - self.top)


def _open(width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" {FONT} font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        f'<text x="{width / 2:.0f}" y="22" text-anchor="middle" font-size="15" font-weight="600" '
        f'fill="#222">{escape(title)}</text>',
    ]


def _y_axis(frame: _Frame, ticks: list[float], fmt: Callable[[float], str], label: str) -> list[str]:
    out = []
    for tick in ticks:
        y = frame.y(tick)
        out.append(
            f'<line x1="{frame.left}" x2="{frame.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e6e6"/>'
            f'<text x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">'
            f"{escape(fmt(tick))}</text>"
        )
    middle = (frame.top + frame.bottom) / 2
    out.append(
        f'<text x="14" y="{middle:.0f}" text-anchor="middle" fill="#333" '
        f'transform="rotate(-90 14 {middle:.0f})">{escape(label)}</text>'
    )
    return out


def _legend(entries: Sequence[tuple[str, str, bool]], width: int, y: float) -> list[str]:
    """Legend entries ``(text, colour, dashed)`` laid out left to right, wrapping."""
    out, x, row = [], 64.0, 0
    for text, stroke, dashed in entries:
        item = 44 + 7.5 * len(text)
        if x + item > width - 10 and x > 64:
            x, row = 64.0, row + 1
        ly = y + row * 18
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        out.append(
            f'<line x1="{x:.0f}" x2="{x + 24:.0f}" y1="{ly:.0f}" y2="{ly:.0f}" stroke="{stroke}" '
            f'stroke-width="3"{dash}/><text x="{x + 30:.0f}" y="{ly + 4:.0f}" fill="#333">'
            f"{escape(text)}</text>"
        )
        x += item
    return out


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str = "impressions",
    y_label: str = "click-through rate",
    markers: Sequence[tuple[float, str]] = (),
    width: int = 760,
    height: int = 360,
    y_format: Callable[[float], str] = percent,
    x_format: Callable[[float], str] = _thousands,
) -> str:
    """A line chart: one ``<polyline>`` per series with at least one point, vertical ``markers``
    (``(x, label)``, e.g. a drift), axes with round ticks and a legend below."""
    drawn = [s for s in series if s.points]
    xs = [x for s in drawn for x, _ in s.points] + [x for x, _ in markers]
    ys = [y for s in drawn for _, y in s.points if math.isfinite(y)]
    x_ticks = nice_ticks(min(xs, default=0.0), max(xs, default=1.0))
    y_ticks = nice_ticks(min(0.0, *ys) if ys else 0.0, max(ys, default=0.1) * 1.05 or 0.1)
    frame = _Frame(width, height, x_ticks, y_ticks)
    out = _open(width, height, title)
    out += _y_axis(frame, y_ticks, y_format, y_label)
    for tick in x_ticks:
        x = frame.x(tick)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.bottom}" y2="{frame.bottom + 4}" stroke="#999"/>'
            f'<text x="{x:.1f}" y="{frame.bottom + 17}" text-anchor="middle" fill="#555">'
            f"{escape(x_format(tick))}</text>"
        )
    out.append(
        f'<line x1="{frame.left}" x2="{frame.right}" y1="{frame.bottom}" y2="{frame.bottom}" stroke="#999"/>'
        f'<text x="{(frame.left + frame.right) / 2:.0f}" y="{frame.bottom + 34}" text-anchor="middle" '
        f'fill="#333">{escape(x_label)}</text>'
    )
    for at, label in markers:
        x = frame.x(at)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top}" y2="{frame.bottom}" stroke="#c23b4a" '
            f'stroke-dasharray="3 3"/><text x="{x + 4:.1f}" y="{frame.top + 12}" fill="#c23b4a">'
            f"{escape(label)}</text>"
        )
    for index, s in enumerate(drawn):
        points = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in s.points if math.isfinite(y))
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        out.append(
            f'<polyline data-series="{escape(s.name)}" fill="none" stroke="{colour(s.name, index)}" '
            f'stroke-width="{s.width:g}" stroke-linejoin="round"{dash} points="{points}"/>'
        )
    out += _legend(
        [(s.label or s.name, colour(s.name, i), s.dashed) for i, s in enumerate(drawn)],
        width,
        frame.bottom + 56,
    )
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(
    categories: Sequence[str],
    series: Sequence[str],
    values: Sequence[Sequence[float | None]],
    *,
    title: str,
    y_label: str = "click-through rate",
    errors: Sequence[Sequence[tuple[float, float] | None]] | None = None,
    labels: Sequence[str] | None = None,
    width: int = 760,
    height: int = 340,
    y_format: Callable[[float], str] = percent,
) -> str:
    """Grouped bars: one group per category, one ``<rect class="bar">`` per series with a value
    (``values[category][series]``; None draws nothing). ``errors`` adds ``(low, high)`` whiskers."""
    flat = [v for row in values for v in row if v is not None and math.isfinite(v)]
    if errors:
        flat += [
            high for row in errors for e in row if e is not None for high in (e[1],) if math.isfinite(high)
        ]
    y_ticks = nice_ticks(min(0.0, *flat) if flat else 0.0, max(flat, default=0.1) * 1.05 or 0.1)
    frame = _Frame(width, height, [0.0, 1.0], y_ticks)
    out = _open(width, height, title)
    out += _y_axis(frame, y_ticks, y_format, y_label)
    group = (frame.right - frame.left) / max(1, len(categories))
    bar = min(36.0, group * 0.8 / max(1, len(series)))
    for c, category in enumerate(categories):
        start = frame.left + c * group + (group - bar * len(series)) / 2
        for s, name in enumerate(series):
            value = values[c][s] if s < len(values[c]) else None
            if value is None or not math.isfinite(value):
                continue
            x, y = start + s * bar, frame.y(max(value, y_ticks[0]))
            base = frame.y(max(0.0, y_ticks[0]))
            out.append(
                f'<rect class="bar" x="{x + 1:.1f}" y="{min(y, base):.1f}" width="{bar - 2:.1f}" '
                f'height="{abs(base - y):.1f}" fill="{colour(name, s)}"><title>{escape(category)}, '
                f"{escape(name)}: {escape(y_format(value))}</title></rect>"
            )
            error = errors[c][s] if errors and s < len(errors[c]) else None
            if error is not None and all(math.isfinite(v) for v in error):
                mid = x + bar / 2
                low, high = frame.y(max(error[0], y_ticks[0])), frame.y(min(error[1], y_ticks[-1]))
                out.append(
                    f'<path class="whisker" d="M{mid:.1f} {low:.1f}V{high:.1f}M{mid - 5:.1f} {low:.1f}'
                    f'h10M{mid - 5:.1f} {high:.1f}h10" stroke="#222" stroke-width="1.5" fill="none"/>'
                )
        # A category label may have a second line ("name\n(n)"), drawn under the first.
        lines = "".join(
            f'<tspan x="{frame.left + (c + 0.5) * group:.1f}" dy="{0 if i == 0 else 14}">'
            f"{escape(line)}</tspan>"
            for i, line in enumerate(category.split("\n")[:2])
        )
        out.append(f'<text y="{frame.bottom + 17}" text-anchor="middle" fill="#333">{lines}</text>')
    out.append(
        f'<line x1="{frame.left}" x2="{frame.right}" y1="{frame.bottom}" y2="{frame.bottom}" stroke="#999"/>'
    )
    out += _legend(
        [(labels[s] if labels else name, colour(name, s), False) for s, name in enumerate(series)],
        width,
        frame.bottom + 50,
    )
    out.append("</svg>")
    return "\n".join(out)
