"""The live view's thread: scrape the services, compute the figures, draw them, repeat."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

import httpx

from tracker.live.figures import LiveFigures
from tracker.live.scrape import Snapshot, merge, scrape
from tracker.live.view import LiveBlock, render_block, render_line
from tracker.settings import Settings

TTY_INTERVAL = 2.0
# Without a terminal (a log file, a pipe) there is no redrawing: one line per refresh,
# less often so the figures do not drown the simulation's own lines.
LINE_INTERVAL = 10.0
CTR_WINDOW = 60.0


def metrics_urls(settings: Settings) -> list[str]:
    s = settings
    return [
        f"http://{s.collector_host}:{s.collector_port}/metrics",
        f"http://{s.api_host}:{s.api_port}/metrics",
        f"http://{s.worker_web_host}:{s.worker_web_port}/metrics",
    ]


class LiveMonitor:
    """Redraws the product's figures every few seconds in a daemon thread.

    While it runs, print through :meth:`echo` so lines land above the block.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        echo: Callable[[str], None],
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval: float | None = None,
    ) -> None:
        self.urls = list(urls)
        self._stream = stream if stream is not None else sys.stdout
        self.tty = self._stream.isatty() if tty is None else tty
        self.interval = interval if interval is not None else (TTY_INTERVAL if self.tty else LINE_INTERVAL)
        self._plain_echo = echo
        self._echo_lock = threading.Lock()  # one line at a time from the two threads
        self._block = LiveBlock(self._stream, echo) if self.tty else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-view", daemon=True)

    def echo(self, message: str) -> None:
        if self._block is not None:
            self._block.echo(message)
        else:
            with self._echo_lock:
                self._plain_echo(message)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop redrawing; the last block stays on screen."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _scrape(self, client: httpx.Client) -> Snapshot:
        return merge(*(scrape(url, client) for url in self.urls))

    def _run(self) -> None:
        live = LiveFigures(ctr_window=CTR_WINDOW)
        with httpx.Client() as client:
            live.add(time.monotonic(), self._scrape(client))
            while not self._stop.wait(self.interval):
                now, current = time.monotonic(), self._scrape(client)
                if self._stop.is_set():
                    break  # services may be stopping: their last answers are not figures
                try:
                    figures = live.add(now, current)
                    if figures is None:
                        continue
                    if self._block is not None:
                        self._block.show(render_block(figures))
                    else:
                        self.echo(render_line(figures))
                except Exception as exc:  # a bug here must not take `tracker up` down: say it once per tick
                    self.echo(f"live view: {type(exc).__name__}: {exc}")
