"""The README's screenshots, made by the project's own headless Chromium: ``make screenshots``.

Runs the product exactly as ``make run`` does (:func:`tracker.local.run_local_product`: real
Kafka and Redis, the services, the demo shop, simulated visitors), and meanwhile:

1. ``docs/images/shop.png``: a new visitor (Chromium, through ``scripts/screenshots.mjs``)
   accepts the consent banner, browses one department, and reloads the home page until its
   banner is an offer for that department (a personalised one);
2. ``docs/images/live-view.png``: the live view's figures, computed from the services'
   ``/metrics`` like the live view does (:mod:`tracker.live`), drawn under the run's real
   output as a terminal page (:func:`tracker.live.page.terminal_page`), then photographed.

Usage: ``.venv/bin/python scripts/screenshots.py [--out-dir docs/images] [--duration 150]
[--category garden]`` (about 3 minutes; needs what ``make bootstrap`` installs).
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import httpx

from tracker.live.figures import OFFER_REQUESTS, WORKER_EVENTS, Figures, LiveFigures
from tracker.live.page import terminal_page
from tracker.live.scrape import merge, scrape
from tracker.live.view import render_block
from tracker.local import run_local_product
from tracker.models.catalogue import load_catalogue
from tracker.settings import REPO_ROOT, get_settings

VIEWPORT = {"width": 1100, "height": 750}
SCRIPT = REPO_ROOT / "scripts" / "screenshots.mjs"
BROWSE = {  # a department page and three of its products, as a person would click through
    "garden": ["/c/garden", "/p/garden-raised-bed", "/p/garden-seed-kit", "/p/garden-pruning-shears"],
}
TERMINAL_LINES = 20  # the last lines of the terminal, block included (a small PNG: text is costly)


class Watcher:
    """Follows the run's output; once the product is up, photographs the shop and keeps the
    latest live figures (with how much output there was at that moment)."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.transcript: list[str] = []
        self.up = threading.Event()
        self.done = threading.Event()
        self.shop_result: dict | None = None
        self.figures: tuple[Figures, int] | None = None
        self.error: BaseException | None = None

    def echo(self, line: str) -> None:
        print(line, flush=True)
        self.transcript.extend(line.split("\n"))
        if "Ctrl-C stops everything." in line:
            self.up.set()
        if line.startswith("Stopping services"):
            self.done.set()  # figures from stopping services are not the live view's

    def url(self, label: str) -> str:
        text = "\n".join(self.transcript)
        match = re.search(rf"^\s*{label}\s+(http://\S+)", text, re.MULTILINE)
        if not match:
            raise RuntimeError(f"no {label} URL in the output of tracker up")
        return match.group(1)

    def run(self) -> None:
        try:
            if not self.up.wait(timeout=300):
                raise RuntimeError("the product did not come up within 5 minutes")
            urls = re.findall(r"http://[^\s,]+/metrics", "\n".join(self.transcript))
            sampler = threading.Thread(target=self.sample, args=(urls,), daemon=True)
            sampler.start()
            # Let the first simulated visitors train the model a little, then visit the shop.
            time.sleep(self.args.shop_after)
            self.shop_result = self.shop(self.url("demo shop"))
            sampler.join()
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def shop(self, base: str) -> dict:
        catalogue = load_catalogue(get_settings().catalogue_path)
        category = self.args.category
        fitting = [o.id for o in catalogue.offers if category in o.categories and "home-hero" in o.slots]
        result: dict = {}
        for attempt in range(1, 4):  # a new visitor each time: 1 in 20 falls in the holdout group
            job = {
                "userDataDir": str(self.work / f"profile-{attempt}"),
                "viewport": VIEWPORT,
                "shop": {
                    "base": base,
                    "browse": BROWSE[category],
                    "slot": "home-hero",
                    "fitting": fitting,
                    "out": str(self.args.out_dir / "shop.png"),
                    "deadlineMs": 60_000,
                },
            }
            result = run_browser(job, self.work / f"shop-{attempt}.json")["shop"]
            print(f"[screenshots] shop, visitor {attempt}: {result}", flush=True)
            if result.get("ok"):
                return result
        raise RuntimeError(f"no personalised {category} banner on the home page after 3 visitors: {result}")

    def sample(self, urls: list[str]) -> None:
        """Scrape every 2 s (as the live view does) until the run ends; keep the latest figures."""
        live = LiveFigures()
        with httpx.Client() as client:
            while not self.done.wait(2.0):
                now = time.monotonic()
                snapshot = merge(*(scrape(url, client) for url in urls))
                if OFFER_REQUESTS not in snapshot or WORKER_EVENTS not in snapshot:
                    continue  # a service did not answer (starting or stopping): not a figure
                figures = live.add(now, snapshot)
                if figures is None:
                    continue
                self.figures = (figures, len(self.transcript))


def run_browser(job: dict, job_file: Path) -> dict:
    job_file.write_text(json.dumps(job))
    done = subprocess.run(
        ["node", str(SCRIPT), str(job_file)], capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the browser script failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def recompress_png(path: Path) -> None:
    """Deflate the image data again at zlib's best level (lossless; Chromium favours speed)."""
    data = path.read_bytes()
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    idat = zlib.compress(zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT")), 9)
    out, placed = [data[:8]], False
    for kind, body in chunks:
        if kind == b"IDAT":
            if placed:
                continue
            kind, body, placed = b"IDAT", idat, True
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
    smaller = b"".join(out)
    if len(smaller) < len(data):
        path.write_bytes(smaller)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "docs" / "images")
    parser.add_argument("--duration", type=float, default=100.0, help="seconds of simulated traffic")
    parser.add_argument("--rate", type=float, default=8.0, help="simulated events per second")
    parser.add_argument("--shop-after", type=float, default=20.0, help="seconds before visiting the shop")
    parser.add_argument("--category", choices=sorted(BROWSE), default="garden")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="tracker-screenshots-") as tmp:
        work = Path(tmp)
        watcher = Watcher(args, work)
        thread = threading.Thread(target=watcher.run, name="screenshots", daemon=True)
        thread.start()
        try:
            run_local_product(
                get_settings(),
                kafka_port=0,
                redis_port=0,
                simulate=True,
                visitors=12,
                rate=args.rate,
                duration=args.duration,
                echo=watcher.echo,
                log_dir=REPO_ROOT / "var" / "log" / f"screenshots-{time.strftime('%Y%m%d-%H%M%S')}",
                live=False,  # the figures are drawn into the picture instead
            )
        finally:
            watcher.done.set()
            thread.join(timeout=320)
        if watcher.error is not None:
            raise watcher.error
        if watcher.figures is None:
            raise RuntimeError("no live figures: the services' /metrics never answered")

        figures, shown = watcher.figures
        above = ["$ make run", *watcher.transcript[:shown]]
        block = render_block(figures)
        page = work / "live-view.html"
        page.write_text(terminal_page(above[-(TERMINAL_LINES - len(block)) :], block, title="make run"))
        live_png = args.out_dir / "live-view.png"
        run_browser(
            {
                "userDataDir": str(work / "profile-view"),
                "viewport": VIEWPORT,
                "pages": [{"url": page.as_uri(), "out": str(live_png), "selector": ".frame"}],
            },
            work / "view.json",
        )
    for name in ("shop.png", "live-view.png"):
        path = args.out_dir / name
        recompress_png(path)
        print(
            f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}: "
            f"{path.stat().st_size / 1024:.0f} KB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
