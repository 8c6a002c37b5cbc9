"""Harness for the browser tests of the snippet (imported as a plain module from ``tests/``).

- :class:`StaticSite`: a site owner's web server on loopback, serving pages that embed
  the paste-in loader exactly as ``js-snippet/README.md`` shows it.
- :class:`Browser`: Debian's Chromium driven by ``js-snippet/e2e/driver.mjs``
  (playwright-core), one JSON command per line, every command bounded in time.
- :class:`KafkaEvents`: what arrived on the ``events`` topic since it was opened, per site.
"""

from __future__ import annotations

import functools
import json
import queue
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from tracker.settings import REPO_ROOT

SNIPPET_DIR = REPO_ROOT / "js-snippet"
DIST = SNIPPET_DIR / "dist"
DRIVER = SNIPPET_DIR / "e2e" / "driver.mjs"
COMMAND_TIMEOUT_SECONDS = 60.0


def build_snippet() -> None:
    """Build dist/ from the current sources (esbuild: well under a second)."""
    if not (SNIPPET_DIR / "node_modules" / "esbuild").is_dir():
        raise RuntimeError("js-snippet/node_modules is missing: run scripts/bootstrap.sh (it runs npm ci)")
    subprocess.run(["node", "build.mjs"], cwd=SNIPPET_DIR, check=True, timeout=120, capture_output=True)


class _Handler(SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows what matters


class StaticSite:
    """Static pages on 127.0.0.1, written by the tests into ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        # The site's own copy of the snippet, as a site that serves it from its domain has.
        (root / "s").mkdir(exist_ok=True)
        shutil.copy(DIST / "t.js", root / "s" / "t.js")

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def page(
        self,
        path: str,
        config: dict[str, Any],
        *,
        script_src: str,
        calls: str = "",
        body: str = "",
        title: str = "Test shop",
    ) -> str:
        """Writes a page embedding the loader and ``tracker('init', config)``; returns its URL."""
        loader = (DIST / "loader.js").read_text().strip()
        assert '"/s/t.js"' in loader, "the built loader no longer loads /s/t.js"
        loader = loader.replace('"/s/t.js"', json.dumps(script_src))
        html = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<script>
{loader}
tracker("init", {json.dumps(config)});
{calls}
</script></head>
<body>{body}</body></html>
"""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html)
        return f"{self.origin}/{path.lstrip('/')}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class DriverError(AssertionError):
    pass


class Browser:
    """One Chromium profile (its own user data dir), driven command by command."""

    def __init__(self, user_data_dir: Path, **launch: Any) -> None:
        self._proc = subprocess.Popen(
            ["node", str(DRIVER)],
            cwd=SNIPPET_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._ids = 0
        threading.Thread(target=self._read, daemon=True).start()
        self("launch", userDataDir=str(user_data_dir), **launch)

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._answers.put(line)
        self._answers.put(None)

    def __call__(self, cmd: str, **args: Any) -> Any:
        self._ids += 1
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"id": self._ids, "cmd": cmd, **args}) + "\n")
        self._proc.stdin.flush()
        try:
            line = self._answers.get(timeout=COMMAND_TIMEOUT_SECONDS)
        except queue.Empty:
            raise DriverError(f"no answer to {cmd!r} within {COMMAND_TIMEOUT_SECONDS:g} s") from None
        if line is None:
            stderr = self._proc.stderr.read() if self._proc.stderr else ""
            raise DriverError(f"the browser driver exited during {cmd!r}: {stderr[-2000:]}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise DriverError(f"{cmd} {args}: {answer['error']}")
        return answer["result"]

    # Conveniences used by most tests.
    def storage(self, page: int = 0) -> dict[str, str]:
        return self("eval", page=page, expr="Object.fromEntries(Object.entries(localStorage))")

    def queued(self, page: int = 0) -> int:
        return len([k for k in self.storage(page) if k.startswith("trk:q:")])

    def wait_queue_empty(self, page: int = 0, timeout: int = 20_000) -> None:
        self(
            "waitFor",
            page=page,
            expr="!Object.keys(localStorage).some((k) => k.startsWith('trk:q:'))",
            timeout=timeout,
        )

    def page_errors(self) -> list[str]:
        return self("errors")["pageErrors"]

    def close(self) -> None:
        try:
            if self._proc.poll() is None:
                self("close")
        finally:
            if self._proc.stdin:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)


class KafkaEvents:
    """Records of the ``events`` topic appended since opening, grouped by site."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
        partitions = self._consumer.partitions_for_topic(topic)
        assert partitions, f"topic {topic!r} does not exist"
        self._tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(self._tps)
        self._consumer.seek_to_end(*self._tps)
        for tp in self._tps:
            self._consumer.position(tp)  # resolve the end offsets now, before any test sends
        self._by_site: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def _poll(self, timeout_ms: int) -> None:
        for records in self._consumer.poll(timeout_ms=timeout_ms).values():
            for record in records:
                tracked = json.loads(record.value)
                self._by_site[tracked["event"]["site_id"]].append(tracked)

    def wait_for(
        self, site: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """The site's events once ``done(events)`` holds, or as they are at the deadline."""
        deadline = time.monotonic() + timeout
        while not done(self.events(site)) and time.monotonic() < deadline:
            self._poll(200)
        return self.events(site)

    def drain(self, site: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The site's events, having read everything the topic holds now."""
        end = self._consumer.end_offsets(self._tps)
        deadline = time.monotonic() + timeout
        while any(self._consumer.position(tp) < end[tp] for tp in self._tps):
            assert time.monotonic() < deadline, "records below the end offsets were not readable"
            self._poll(200)
        return self.events(site)

    def events(self, site: str) -> list[dict[str, Any]]:
        return [tracked["event"] for tracked in self._by_site[site]]

    def close(self) -> None:
        self._consumer.close()


def types(events: list[dict[str, Any]]) -> list[str]:
    return sorted(e["type"] for e in events)


def count(events: list[dict[str, Any]], kind: str) -> int:
    return sum(1 for e in events if e["type"] == kind)
