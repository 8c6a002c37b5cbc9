"""The offer catalogue in Redis: one version every offer API replica serves, whoever edits it.

Keys (:mod:`tracker.keys`, ``<app>`` = ``TRACKER_WORKER_APP_ID``; both share the hash tag
``{<app>}``, so the publishing script touches one Redis Cluster slot):

- ``trk:v1:catalogue:{<app>}:current``: the pointer, the version being served (a content hash,
  :func:`~tracker.serve.snapshots.catalogue_version`, the one ``/metrics`` and ``/readyz`` show);
- ``trk:v1:catalogue:{<app>}:<version>``: the snapshot, plain JSON (never pickle)::

      {"schema": "tracker.catalogue", "schema_version": 1, "version": "<hash>",
       "previous": "<hash>" | null, "published_at": <ms>, "source": "admin" | "file" | "seed" | "cli",
       "file_version": "<hash>" | null,   # the last file content published (carried by edits)
       "catalogue": {...}}         # Catalogue.to_data(): what parse_catalogue reads back

Every write is :data:`PUBLISH_LUA`: a compare-and-set that writes the snapshot and then swaps
the pointer, only if the pointer still names the version the change was based on (or is absent,
for a seed). Two admins racing never lose an update: the loser's change is re-applied to the
winner's catalogue (:meth:`CatalogueStore.change`), or refused with a precondition failure when
it named its base version (``If-Match``). A replaced snapshot expires after
:data:`HISTORY_SECONDS` (an operator can still read it for a while).

Which catalogue wins (``TRACKER_CATALOGUE_SOURCE=redis``, the default; see
:func:`open_redis_catalogue_cache`):

- Redis, once it holds one. The file ``TRACKER_CATALOGUE_PATH`` *seeds* it: a replica that
  finds no pointer publishes the catalogue it serves (its file at first start), only while
  the pointer is absent, so all replicas converge on one catalogue;
- a change of the file's *content* seen while a replica runs (an edit, a ConfigMap update) is
  published as a new version, replacing admin edits made since: the file wins when it changes.
  Once: replicas that see the same content later (the kubelet updates pods at different
  times) find it in the snapshot's ``file_version`` and publish nothing, so admin edits made
  after the first replica published it stay. A restart with an unchanged or older file never
  overwrites Redis;
- the file is read and validated at every start (an invalid file stops the start-up): it is
  what the replica serves while Redis is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from tracker import keys
from tracker.errors import CatalogueError
from tracker.models.catalogue import Catalogue, parse_catalogue
from tracker.serve.snapshots import VersionedCache, catalogue_version, file_stamp, load_with_version

log = logging.getLogger(__name__)

SNAPSHOT_SCHEMA = "tracker.catalogue"
SNAPSHOT_SCHEMA_VERSION = 1
# How long a replaced catalogue snapshot stays readable (history for operators; a week).
HISTORY_SECONDS = 7 * 24 * 3600
# Compare-and-set attempts before a change that keeps losing races is refused (409), and the
# longest jittered pause between two (changes within one replica are serialised by a lock, so
# only replicas race).
CHANGE_ATTEMPTS = 10
CHANGE_BACKOFF_SECONDS = 0.05

# KEYS[1] pointer, KEYS[2] new snapshot, KEYS[3] snapshot being replaced (= KEYS[2] for a seed).
# ARGV[1] expected pointer ('' = must be absent), ARGV[2] new version, ARGV[3] snapshot JSON,
# ARGV[4] seconds the replaced snapshot stays. Returns {1, new} or {0, current pointer or ''}.
PUBLISH_LUA = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if current then return {0, current} end
elseif current ~= ARGV[1] then
  return {0, current or ''}
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[1] ~= '' and ARGV[1] ~= ARGV[2] then
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return {1, ARGV[2]}
"""


class CatalogueConflict(Exception):
    """The pointer is no longer the version a change was based on (``current``: what it is)."""

    def __init__(self, message: str, current: str | None) -> None:
        super().__init__(message)
        self.current = current


class PreconditionFailed(CatalogueConflict):
    """``If-Match`` named a version that is not the current one."""


class CatalogueSnapshotError(CatalogueError):
    """A snapshot in Redis is missing, not ours or altered (not the caller's input at fault)."""


@dataclass(frozen=True)
class StoredCatalogue:
    """A catalogue snapshot as stored: the catalogue, its version and where it came from."""

    version: str
    catalogue: Catalogue
    previous: str | None = None
    published_at: int = 0
    source: str = ""
    # Version of the last catalogue file published in this catalogue's history (None: never).
    file_version: str | None = None


def encode_snapshot(stored: StoredCatalogue) -> bytes:
    """The snapshot JSON of :mod:`this module's <tracker.serve.catalogue_store>` layout."""
    return orjson.dumps(
        {
            "schema": SNAPSHOT_SCHEMA,
            "schema_version": SNAPSHOT_SCHEMA_VERSION,
            "version": stored.version,
            "previous": stored.previous,
            "published_at": stored.published_at,
            "source": stored.source,
            "file_version": stored.file_version,
            "catalogue": stored.catalogue.to_data(),
        }
    )


def decode_snapshot(raw: bytes, expected_version: str) -> StoredCatalogue:
    """Read a snapshot back; :class:`CatalogueError` if it is not ours, invalid or altered."""
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CatalogueSnapshotError(f"catalogue snapshot {expected_version} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SNAPSHOT_SCHEMA:
        raise CatalogueSnapshotError(
            f"catalogue snapshot {expected_version} is not a {SNAPSHOT_SCHEMA} snapshot"
        )
    if data.get("schema_version") != SNAPSHOT_SCHEMA_VERSION:
        raise CatalogueSnapshotError(
            f"catalogue snapshot {expected_version} has schema_version {data.get('schema_version')!r}; "
            f"this release reads {SNAPSHOT_SCHEMA_VERSION}"
        )
    try:
        catalogue = parse_catalogue(data.get("catalogue"))
    except CatalogueError as exc:
        raise CatalogueSnapshotError(f"catalogue snapshot {expected_version}: {exc}") from None
    version = catalogue_version(catalogue)
    if version != expected_version or data.get("version") != expected_version:
        raise CatalogueSnapshotError(
            f"catalogue snapshot {expected_version} holds version {version} (altered or mislabelled)"
        )
    return StoredCatalogue(
        version=version,
        catalogue=catalogue,
        previous=data.get("previous"),
        published_at=int(data.get("published_at") or 0),
        source=str(data.get("source") or ""),
        file_version=data.get("file_version"),
    )


class CatalogueStore:
    """Reads and compare-and-set writes of the catalogue of ``app_id`` (Redis errors propagate)."""

    def __init__(self, redis: Redis, app_id: str, *, timeout_seconds: float = 5.0) -> None:
        self.redis = redis
        self.app_id = app_id
        self.timeout_seconds = timeout_seconds
        self.pointer_key = keys.catalogue_current(app_id)
        self._publish = redis.register_script(PUBLISH_LUA)
        self._changing = asyncio.Lock()

    async def current_version(self) -> str | None:
        """The version the pointer names, or None when Redis holds no catalogue."""
        async with asyncio.timeout(self.timeout_seconds):
            raw = await self.redis.get(self.pointer_key)
        return raw.decode("utf-8", "replace") if raw is not None else None

    async def load(self, version: str) -> StoredCatalogue:
        """Snapshot ``version``; :class:`CatalogueError` if it is missing or cannot be used."""
        key = keys.catalogue(self.app_id, version)
        async with asyncio.timeout(self.timeout_seconds):
            raw = await self.redis.get(key)
        if raw is None:
            raise CatalogueSnapshotError(f"catalogue snapshot {key} named by the pointer does not exist")
        return await asyncio.to_thread(decode_snapshot, raw, version)

    async def read(self) -> StoredCatalogue | None:
        """The current catalogue, or None when Redis holds none."""
        version = await self.current_version()
        return await self.load(version) if version is not None else None

    async def publish(
        self,
        catalogue: Catalogue,
        *,
        expected: str | None,
        source: str,
        version: str | None = None,
        file_version: str | None = None,
    ) -> StoredCatalogue:
        """Write ``catalogue`` and point at it, only if the pointer is ``expected`` (None: absent).

        Raises :class:`CatalogueConflict` (with the pointer found) otherwise.
        """
        version = version or catalogue_version(catalogue)
        stored = StoredCatalogue(
            version=version,
            catalogue=catalogue,
            previous=expected,
            published_at=time.time_ns() // 1_000_000,
            source=source,
            file_version=file_version,
        )
        old_key = keys.catalogue(self.app_id, expected) if expected else keys.catalogue(self.app_id, version)
        async with asyncio.timeout(self.timeout_seconds):
            done, current = await self._publish(
                keys=[self.pointer_key, keys.catalogue(self.app_id, version), old_key],
                args=[expected or "", version, encode_snapshot(stored), HISTORY_SECONDS],
            )
        if not done:
            found = current.decode() if current else None
            raise CatalogueConflict(
                f"the catalogue changed meanwhile (now version {found}, not {expected})", found
            )
        log.info("catalogue: published version %s (%s, was %s)", version, source, expected)
        return stored

    async def publish_file(self, catalogue: Catalogue, *, source: str = "file", once: bool = False) -> str:
        """Make a file's ``catalogue`` the current one whatever it replaces; the current version.

        ``once``: not if this file content was already published (the current snapshot's
        ``file_version``), so that replicas seeing a file change late keep the edits made since.
        """
        version = catalogue_version(catalogue)
        for attempt in range(CHANGE_ATTEMPTS):
            if attempt:
                await asyncio.sleep(random.uniform(0, CHANGE_BACKOFF_SECONDS))
            stored = await self.read()
            if stored is not None and (
                stored.version == version or (once and stored.file_version == version)
            ):
                return stored.version
            with contextlib.suppress(CatalogueConflict):
                await self.publish(
                    catalogue,
                    expected=stored.version if stored else None,
                    source=source,
                    version=version,
                    file_version=version,
                )
                return version
        raise CatalogueConflict(
            f"the catalogue changed {CHANGE_ATTEMPTS} times while it was being replaced; retry", None
        )

    async def change(
        self,
        mutate: Callable[[Catalogue], Catalogue],
        *,
        fallback: Catalogue,
        if_match: str | None = None,
        source: str = "admin",
    ) -> StoredCatalogue:
        """Apply ``mutate`` to the current catalogue and publish the result (compare-and-set).

        ``fallback`` is the base while Redis holds no catalogue yet. When the pointer moves under
        the change, it is applied again to the new catalogue (up to :data:`CHANGE_ATTEMPTS`); with
        ``if_match`` it is refused instead (:class:`PreconditionFailed`). Errors of ``mutate``
        (:class:`CatalogueError`, ``KeyError``...) propagate. A change that changes nothing
        publishes nothing.
        """
        async with self._changing:
            return await self._change(mutate, fallback=fallback, if_match=if_match, source=source)

    async def _change(
        self,
        mutate: Callable[[Catalogue], Catalogue],
        *,
        fallback: Catalogue,
        if_match: str | None,
        source: str,
    ) -> StoredCatalogue:
        for attempt in range(CHANGE_ATTEMPTS):
            if attempt:
                await asyncio.sleep(random.uniform(0, CHANGE_BACKOFF_SECONDS))
            stored = await self.read()
            base = stored or StoredCatalogue(version="", catalogue=fallback)
            if if_match is not None and if_match != base.version:
                raise PreconditionFailed(
                    f"If-Match names version {if_match}, but the catalogue is at version "
                    f"{base.version or '(none yet)'}; read it again and retry",
                    base.version or None,
                )
            new = mutate(base.catalogue)
            version = catalogue_version(new)
            if stored is not None and version == stored.version:
                return stored
            try:
                return await self.publish(
                    new,
                    expected=stored.version if stored else None,
                    source=source,
                    file_version=base.file_version,
                )
            except CatalogueConflict as exc:
                if if_match is not None:
                    raise PreconditionFailed(str(exc), exc.current) from None
        raise CatalogueConflict(
            f"the catalogue changed {CHANGE_ATTEMPTS} times while this change was applied; retry", None
        )


def _read_file(path: Path) -> tuple[Hashable, Catalogue, str]:
    stat = file_stamp(path)  # before the read: an edit made during it is seen at the next probe
    return (stat, *load_with_version(path))


async def open_redis_catalogue_cache(
    store: CatalogueStore,
    path: Path,
    *,
    interval_seconds: float,
    on_loaded: Callable[[Catalogue, str], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
    start_timeout_seconds: float | None = None,
) -> VersionedCache[Catalogue]:
    """The catalogue every replica serves: Redis's, seeded from and falling back to ``path``.

    Reads and validates the file now (:class:`CatalogueError` stops the start-up). Each probe
    (every ``interval_seconds``): publishes the file if its content changed since this replica
    last read it; publishes the served catalogue if Redis holds none (first start, or Redis lost
    it), only while absent; then reads the pointer. A new pointer loads its snapshot. Errors of
    the file, of a snapshot, and Redis being unreachable keep the catalogue being served and go
    to ``on_error``.
    """
    stat, catalogue, version = await asyncio.to_thread(_read_file, path)
    # The file as this replica last read it, and a changed content not yet published.
    file_seen: dict[str, Any] = {"stat": stat, "version": version, "pending": None}

    async def check_file() -> None:
        try:
            stat = await asyncio.to_thread(file_stamp, path)
            if stat != file_seen["stat"]:
                file_seen["stat"] = stat  # a broken edit is reported once, not at every probe
                stat, catalogue, version = await asyncio.to_thread(_read_file, path)
                file_seen["stat"] = stat
                if version != file_seen["version"]:
                    file_seen["pending"] = catalogue
        except (OSError, CatalogueError) as exc:
            log.warning("catalogue file %s: not published: %s", path, exc)
            if on_error is not None:
                on_error(exc if isinstance(exc, CatalogueError) else CatalogueError(str(exc)))
        pending: Catalogue | None = file_seen["pending"]
        if pending is not None:
            await store.publish_file(pending, once=True)
            file_seen["version"] = catalogue_version(pending)
            file_seen["pending"] = None

    async def probe() -> Hashable:
        await check_file()
        version = await store.current_version()
        if version is None:
            with contextlib.suppress(CatalogueConflict):  # another replica seeded it first
                await store.publish(
                    cache.value, expected=None, source="seed", file_version=file_seen["version"]
                )
            version = await store.current_version()
        return version

    async def load(version: Hashable) -> tuple[Catalogue, str]:
        if version is None:
            raise CatalogueSnapshotError(f"the catalogue pointer {store.pointer_key} is gone")
        stored = await store.load(str(version))
        return stored.catalogue, stored.version

    cache: VersionedCache[Catalogue] = VersionedCache(
        "catalogue",
        probe=probe,
        load=load,
        interval_seconds=interval_seconds,
        on_loaded=on_loaded,
        on_error=on_error,
        initial=(("file", version), catalogue, version),
        start_timeout_seconds=start_timeout_seconds,
    )
    return cache
