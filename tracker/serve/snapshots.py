"""In-process copies of slowly changing data (the catalogue, the click model),
refreshed in the background when their version changes.

The request path reads ``cache.value``: an attribute, never I/O. A background
task asks ``probe()`` for the current version every ``interval_seconds`` (cheap:
a file's mtime and size, or one Redis GET of a version pointer) and only when
it differs calls ``load(version)``. A load that fails keeps the last good value
and is counted, so a broken catalogue edit never takes serving down; it is
retried at the next tick. Probes and loads that touch files run in a thread
(``asyncio.to_thread``), never on the event loop.

The catalogue comes from Redis (a versioned snapshot and a pointer that every
replica follows, seeded from the file: :mod:`tracker.serve.catalogue_store`),
or from the file alone (:func:`file_catalogue_cache`, ``TRACKER_CATALOGUE_SOURCE=file``).

The click model (:func:`redis_model_cache`) probes the pointer
``trk:v1:model:{<app>}:click:current`` that the trainer swaps after writing a
snapshot, and decodes the snapshot it names. Unlike the catalogue it never
stops the start-up: until a snapshot is published (or while Redis is
unreachable) the API decides with the untrained :class:`ClickModel` and its
priors (version ``0000000000-<hash>``).
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

from redis.asyncio import Redis

from tracker import keys
from tracker.models.catalogue import Catalogue, load_catalogue
from tracker.models.learner import ClickModel, SnapshotError, decode_snapshot

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
        initial: tuple[Hashable, T, str] | None = None,
        start_timeout_seconds: float | None = None,
    ) -> None:
        """``initial`` (probe result, value, version) makes the cache usable before its first
        load, and :meth:`start` then never fails: a first load that fails or takes longer than
        ``start_timeout_seconds`` keeps ``initial`` (the refresh loop tries again)."""
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
        self._initial = initial
        self.start_timeout_seconds = start_timeout_seconds
        # One refresh at a time: a caller's refresh (the admin API after a change) and the
        # loop's must not finish in the wrong order and swap an older version back in.
        self._refreshing = asyncio.Lock()

    @property
    def value(self) -> T:
        if self._value is None:
            raise RuntimeError(f"{self.name} is not loaded yet; call start() first")
        return self._value

    async def start(self) -> None:
        """Load the current version and start refreshing. Without ``initial``, errors propagate
        (no value, no service); with it, a failed load is counted and ``initial`` is kept."""
        if self._initial is not None:
            self._set(*self._initial)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.start_timeout_seconds):
                    await self.refresh()
        else:
            probed = await self._probe()
            value, version = await self._load(probed)
            self._set(probed, value, version)
        if self.interval_seconds > 0 and self._task is None:
            self._task = asyncio.create_task(self._refresh_forever(), name=f"refresh-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None

    async def refresh(self) -> bool:
        """Reload if the version changed; True when a new value was swapped in."""
        async with self._refreshing:
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


async def stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel background tasks and wait until they are done.

    Cancels again while one is still running: a cancellation that lands inside a client
    library's I/O can be absorbed there, and the task would then wait for its next item forever.
    """
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task %s ended with %r", task.get_name(), task.exception())


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
        return await asyncio.to_thread(file_stamp, path)

    async def load(_: Hashable) -> tuple[Catalogue, str]:
        return await asyncio.to_thread(load_with_version, path)

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


# Bounds one probe or snapshot load (a snapshot is tens to hundreds of kB of JSON).
MODEL_LOAD_TIMEOUT_SECONDS = 5.0


def redis_model_cache(
    redis: Redis,
    app_id: str,
    *,
    interval_seconds: float,
    on_loaded: Callable[[ClickModel, str], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
    start_timeout_seconds: float | None = None,
) -> VersionedCache[ClickModel]:
    """The click model the trainer of ``app_id`` publishes, reloaded when its pointer changes.

    Starts with the untrained model (its version is ``0000000000-<hash>``: no update). A snapshot that is
    missing, not JSON, altered or of another layout raises :class:`SnapshotError` (the last good
    model is kept); so does a pointer that disappears once a snapshot was loaded.
    """

    async def probe() -> Hashable:
        async with asyncio.timeout(MODEL_LOAD_TIMEOUT_SECONDS):
            pointer = await redis.get(keys.click_model_current(app_id))
        return pointer.decode("utf-8", "replace") if pointer is not None else None

    async def load(version: Hashable) -> tuple[ClickModel, str]:
        if version is None:
            raise SnapshotError(
                f"the click-model pointer {keys.click_model_current(app_id)} is gone; keeping the "
                "model loaded before it (publish a snapshot again to replace it)"
            )
        key = keys.click_model(app_id, str(version))
        async with asyncio.timeout(MODEL_LOAD_TIMEOUT_SECONDS):
            raw = await redis.get(key)
        if raw is None:
            raise SnapshotError(f"click-model snapshot {key} named by the pointer does not exist")
        model = await asyncio.to_thread(decode_snapshot, raw)
        if model.version != version:
            raise SnapshotError(f"{key} holds version {model.version!r}, not {version!r}")
        return model, model.version

    cold = ClickModel()
    return VersionedCache(
        "click-model",
        probe=probe,
        load=load,
        interval_seconds=interval_seconds,
        on_loaded=on_loaded,
        on_error=on_error,
        initial=(None, cold, cold.version),
        start_timeout_seconds=start_timeout_seconds,
    )


def file_stamp(path: Path) -> Hashable:
    """What tells a changed file: mtime, size and inode (blocking: call it in a thread)."""
    stat = os.stat(path)
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def load_with_version(path: Path) -> tuple[Catalogue, str]:
    """The catalogue of a file and its content version (blocking: call it in a thread)."""
    catalogue = load_catalogue(path)
    return catalogue, catalogue_version(catalogue)


def catalogue_version(catalogue: Catalogue) -> str:
    """The content version of a catalogue (what ``tracker_offer_catalogue_info`` reports).

    A hash of what was validated, not of the file: a comment-only edit keeps the version.
    """
    return hashlib.sha256(catalogue.model_dump_json().encode()).hexdigest()[:12]
