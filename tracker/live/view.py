"""Draw the live figures: a block redrawn in place on a terminal, one line otherwise.

Plain text with a few ANSI codes (``rich`` is not a dependency of the project).
The block keeps to the bottom of the terminal: anything else printed meanwhile
(the simulation's lines) goes through :meth:`LiveBlock.echo`, which erases the
block, prints the line and draws the block again below it, so the two never mix.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from tracker.live.figures import Figures
from tracker.serve.metrics import OUTCOMES

DIM, RESET = "\x1b[2m", "\x1b[0m"

# A line of the block: its text, and a note drawn dim after it.
Line = tuple[str, str]


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _seconds(value: float | None) -> str:
    """Milliseconds below a second (one decimal below 10 ms, where the offer API lives)."""
    if value is None:
        return "-"
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _shares(figures: Figures) -> str:
    # The catalogue's outcomes in a fixed order; "empty" only when it happens.
    shown = [o for o in OUTCOMES if o != "empty" or figures.offer_shares.get(o)]
    shown += sorted(set(figures.offer_shares) - set(OUTCOMES))
    if not figures.offer_shares:
        return " ".join(f"{o} -" for o in shown)
    return " ".join(f"{o} {figures.offer_shares.get(o, 0.0) * 100:.0f}%" for o in shown)


def _window(figures: Figures) -> str:
    if figures.window is None:
        return "last min"
    return "last min" if figures.window >= 55 else f"last {figures.window:.0f} s"


def render_block(figures: Figures) -> list[Line]:
    """The few lines of the terminal view, each under 80 columns with typical figures."""
    f = figures
    return [
        (f"live figures, from /metrics every {f.interval:.0f} s", ""),
        (
            f"  events/s  collector {_num(f.collector_events_per_s)} accepted | "
            f"worker {_num(f.worker_events_per_s)} processed | lag {_num(f.consumer_lag, 0)} msgs",
            "",
        ),
        (
            f"  freshness p99 {_seconds(f.freshness_p99)} | "
            f"offers/s {_num(f.offers_per_s)}, p99 {_seconds(f.offer_p99)}",
            "",
        ),
        (f"  offers    {_shares(f)} of {_num(f.offers_total, 0)} so far", ""),
        (
            f"  CTR       {_percent(f.ctr)} since start ({_num(f.clicks, 0)}/{_num(f.impressions, 0)}) | "
            f"{_percent(f.ctr_window)} {_window(f)}",
            "",
        ),
        (f"  learning  {_split(f)} | model learned {_num(f.model_updates, 0)} rewards", "  (rewards)"),
        (
            f"  curve     {_curve(f)}",
            f"  (policy CTR per {_num(f.curve_step, 0)} s of rewards)" if f.curve_step else "",
        ),
    ]


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One character per value, from the lowest bar (0) to the highest (the largest value).

    >>> sparkline([0.0, 0.05, 0.1, 0.2])
    '▁▃▅█'
    """
    top = max(values, default=0.0)
    if top <= 0:
        return SPARKS[0] * len(values)
    last = len(SPARKS) - 1
    return "".join(SPARKS[min(last, round(v / top * last))] for v in values)


def _curve_note(f: Figures) -> str:
    return f"  (policy CTR per {f.curve_step:.0f} s of rewards)" if f.curve_step else ""


def _curve(f: Figures) -> str:
    if not f.curve:
        return "- (a point once enough rewards arrived)"
    return f"{sparkline(f.curve)} {_percent(f.curve[0])} -> {_percent(f.curve[-1])}"


def _split(f: Figures) -> str:
    """CTR of the learned policy vs the holdout group (from rewards: windows closed)."""
    policy, holdout = f.ctr_groups.get("policy"), f.ctr_groups.get("holdout")
    return f"CTR policy {_percent(policy)} vs holdout {_percent(holdout)}"


def render_line(figures: Figures, now: float | None = None) -> str:
    """One line for a log or a pipe (no redrawing there)."""
    f = figures
    stamp = time.strftime("%H:%M:%S", time.localtime(now))
    return (
        f"[live {stamp}] events/s collector {_num(f.collector_events_per_s)} "
        f"worker {_num(f.worker_events_per_s)} | lag {_num(f.consumer_lag, 0)} | "
        f"freshness p99 {_seconds(f.freshness_p99)} | offers {_num(f.offers_per_s)}/s "
        f"p99 {_seconds(f.offer_p99)} | {_shares(f)} | CTR {_percent(f.ctr)} "
        f"({_window(f)} {_percent(f.ctr_window)}) | {_split(f)}, model {_num(f.model_updates, 0)} rewards"
    )


def to_ansi(line: Line, width: int) -> str:
    """A line cut to the terminal's width: a wrapped line would throw the redraw count off."""
    text, note = line
    text = text[: width - 1]
    note = note[: max(0, width - 1 - len(text))]
    return text + (f"{DIM}{note}{RESET}" if note else "")


class LiveBlock:
    """A block of lines kept at the bottom of a terminal; other output goes above it."""

    def __init__(self, stream: TextIO, echo: Callable[[str], None]) -> None:
        self._stream = stream
        self._echo = echo
        self._lock = threading.Lock()  # the view's thread draws, the main thread echoes
        self._lines: list[Line] = []
        self._drawn = 0

    def show(self, lines: Sequence[Line]) -> None:
        with self._lock:
            self._erase()
            self._lines = list(lines)
            self._draw()

    def echo(self, message: str) -> None:
        with self._lock:
            self._erase()
            self._echo(message)
            self._draw()

    def _erase(self) -> None:
        if self._drawn:
            # Up to the block's first line, column 1, then clear to the end of the screen.
            self._stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._stream.flush()
            self._drawn = 0

    def _draw(self) -> None:
        width = shutil.get_terminal_size().columns
        for line in self._lines:
            self._stream.write(to_ansi(line, width) + "\n")
        self._stream.flush()
        self._drawn = len(self._lines)
