"""In-process copies of slowly changing data (the catalogue; later model snapshots),
refreshed in the background when their version changes.

The request path reads ``cache.value``: an attribute, never I/O. A background
task asks ``probe()`` for the current version every ``interval_seconds`` (cheap:
a file's mtime and size, or one Redis GET of a version pointer) and only when
it differs calls ``load(version)``. A load that fails keeps the last good value
and is counted, so a broken catalogue edit never takes serving down; it is
retried at the next tick. Probes and loads that touch files run in a thread
(``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

from tracker.models.catalogue import Catalogue, load_catalogue

log = logging.getLogger(__name__)

T = TypeVar("T")


class VersionedCache(Generic[T]):
    """A value, its version, and the loop that keeps them current."""

    def __init__(
        self,
        name: str,
        *,
        probe: Callable[[], Awaitable[Hashable]],
        load: Callable[[Hashable], Awaitable[tuple[T, str]]],
        interval_seconds: float,
        on_loaded: Callable[[T, str], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.name = name
        self.interval_seconds = interval_seconds
        self._probe = probe
        self._load = load
        self._on_loaded = on_loaded
        self._on_error = on_error
        self._value: T | None = None
        self._probed: Hashable | None = None
        self.version = ""  # short, human-readable version of the loaded value (a content hash)
        self._task: asyncio.Task[None] | None = None

    @property
    def value(self) -> T:
        if self._value is None:
            raise RuntimeError(f"{self.name} is not loaded yet; call start() first")
        return self._value

    async def start(self) -> None:
        """Load the current version (errors propagate: no value, no service) and start refreshing."""
        probed = await self._probe()
        value, version = await self._load(probed)
        self._set(probed, value, version)
        if self.interval_seconds > 0 and self._task is None:
            self._task = asyncio.create_task(self._refresh_forever(), name=f"refresh-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def refresh(self) -> bool:
        """Reload if the version changed; True when a new value was swapped in."""
        try:
            probed = await self._probe()
            if probed == self._probed:
                return False
            value, version = await self._load(probed)
        except Exception as exc:
            log.warning("%s: keeping version %s, reload failed: %s", self.name, self.version, exc)
            if self._on_error is not None:
                self._on_error(exc)
            return False
        self._set(probed, value, version)
        log.info("%s: now at version %s", self.name, version)
        return True

    def _set(self, probed: Hashable, value: T, version: str) -> None:
        self._probed, self._value, self.version = probed, value, version
        if self._on_loaded is not None:
            self._on_loaded(value, version)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_seconds)
            await self.refresh()


def file_catalogue_cache(
    path: Path,
    *,
    interval_seconds: float,
    on_loaded: Callable[[Catalogue, str], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> VersionedCache[Catalogue]:
    """The catalogue from a file, reloaded when the file's mtime, size or inode changes.

    The inode catches an atomic replace (write elsewhere, rename over) with the
    same size and a coarse mtime; the version shown in metrics is a content hash.
    """

    async def probe() -> Hashable:
        stat = await asyncio.to_thread(os.stat, path)
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    async def load(_: Hashable) -> tuple[Catalogue, str]:
        return await asyncio.to_thread(_load_with_version, path)

    return VersionedCache(
        "catalogue",
        probe=probe,
        load=load,
        interval_seconds=interval_seconds,
        on_loaded=on_loaded,
        on_error=on_error,
    )


def static_cache(
    name: str, value: T, version: str, *, on_loaded: Callable[[T, str], None] | None = None
) -> VersionedCache[T]:
    """A cache that never changes (a catalogue handed to ``create_app`` by a test or a caller)."""

    async def probe() -> Hashable:
        return version

    async def load(_: Hashable) -> tuple[T, str]:
        return value, version

    return VersionedCache(name, probe=probe, load=load, interval_seconds=0, on_loaded=on_loaded)


def _load_with_version(path: Path) -> tuple[Catalogue, str]:
    catalogue = load_catalogue(path)
    return catalogue, catalogue_version(catalogue)


def catalogue_version(catalogue: Catalogue) -> str:
    """The content version of a catalogue (what ``tracker_offer_catalogue_info`` reports).

    A hash of what was validated, not of the file: a comment-only edit keeps the version.
    """
    return hashlib.sha256(catalogue.model_dump_json().encode()).hexdigest()[:12]
