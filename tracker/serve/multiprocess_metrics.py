"""Metrics of an offer API running as several processes on one port (``TRACKER_API_WORKERS``).

A scrape reaches one process at a time, so each must answer for all of them:
prometheus-client's multiprocess mode keeps every process's counters, histograms
and gauges in memory-mapped files of one directory (``PROMETHEUS_MULTIPROC_DIR``,
set before the workers start) and sums them at scrape time. Two kinds of series
need more than that mode gives:

- **Versions** (``tracker_offer_model_info{version}``): a version is replaced, never
  summed, and a series written to those files can never be removed, so every model
  ever served would stay. Each process instead writes the versions it serves to a
  small file of its own (:class:`WorkerVersions`), read at scrape time.
- **Process figures** (CPU, memory, file descriptors): read from ``/proc`` for each
  live worker at scrape time, labelled with its ``pid``.

A worker that died (uvicorn starts another) leaves files behind: its counters still
count (totals must not go down), its live gauges and versions are dropped at the
next scrape.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client when it is imported
_VERSIONS_SUFFIX = ".versions.json"


def multiprocess_dir() -> Path | None:
    """The directory shared by this host's API processes; ``None`` for a single process."""
    value = os.environ.get(MULTIPROC_DIR_ENV)
    return Path(value) if value else None


class WorkerVersions:
    """The versions one process serves (the catalogue's, the click model's), as info gauges:
    ``<name>{version="...", pid="..."} 1`` for each live process."""

    def __init__(self, directory: Path, documentation: dict[str, str]) -> None:
        self._path = directory / f"{os.getpid()}{_VERSIONS_SUFFIX}"
        self._documentation = documentation
        self._versions: dict[str, str] = {}

    def set(self, name: str, version: str) -> None:
        if name not in self._documentation:
            raise ValueError(f"unknown info gauge {name!r}; choose one of {', '.join(self._documentation)}")
        self._versions[name] = version
        body = {"versions": self._versions, "documentation": self._documentation}
        partial = self._path.with_suffix(".tmp")
        partial.write_bytes(orjson.dumps(body))
        partial.replace(self._path)  # a scrape reads the old file or the new one, never half of one


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process of the same pid: alive
        return True
    return True


def _pids(directory: Path) -> set[int]:
    """Pids named by the directory's files (``counter_123.db``, ``gauge_livesum_123.db``,
    ``123.versions.json``)."""
    pids: set[int] = set()
    for path in directory.iterdir():
        stem = path.name.removesuffix(_VERSIONS_SUFFIX).removesuffix(".db").rsplit("_", 1)[-1]
        if stem.isdigit():
            pids.add(int(stem))
    return pids


def reap_dead_workers(directory: Path) -> set[int]:
    """Drop the live gauges and versions of processes that are gone; returns the live pids."""
    live: set[int] = set()
    for pid in _pids(directory):
        if _alive(pid):
            live.add(pid)
            continue
        mark_process_dead(pid, str(directory))  # its live* gauges; counters are kept
        with contextlib.suppress(FileNotFoundError):
            (directory / f"{pid}{_VERSIONS_SUFFIX}").unlink()
    return live


class _WorkersCollector(Collector):
    """Each live worker's versions and process figures, labelled with its pid."""

    def __init__(self, directory: Path, pids: Iterable[int]) -> None:
        self._directory = directory
        self._pids = sorted(pids)

    def collect(self) -> Iterator[Metric]:
        versions: dict[int, dict[str, str]] = {}
        documentation: dict[str, str] = {}
        for pid in self._pids:
            try:
                body = orjson.loads((self._directory / f"{pid}{_VERSIONS_SUFFIX}").read_bytes())
            except (FileNotFoundError, orjson.JSONDecodeError):
                continue  # gone since the directory was listed
            versions[pid] = body["versions"]
            documentation |= body["documentation"]
        yield from _info_families(versions, documentation)
        # Only the API's workers (each writes its versions file as it starts): a pid named by
        # an old counter file may belong to another program by now.
        yield from _process_families(versions)


def _info_families(versions: dict[int, dict[str, str]], documentation: dict[str, str]) -> Iterator[Metric]:
    for name, doc in documentation.items():
        family = GaugeMetricFamily(name, doc, labels=["version", "pid"])
        for pid, served in versions.items():
            if name in served:
                family.add_metric([served[name], str(pid)], 1)
        yield family


def _process_families(pids: Iterable[int]) -> Iterator[Metric]:
    families: dict[str, Metric] = {}
    for pid in pids:
        # ProcessCollector reads /proc/<pid>; a pid gone meanwhile yields nothing.
        for metric in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():
            family = families.setdefault(metric.name, Metric(metric.name, metric.documentation, metric.type))
            for sample in metric.samples:
                family.samples.append(Sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value))
    yield from families.values()


def exposition(directory: Path) -> bytes:
    """``/metrics`` for every API process sharing ``directory``."""
    live = reap_dead_workers(directory)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    registry.register(_WorkersCollector(directory, live))
    PlatformCollector(registry=registry)
    return generate_latest(registry)
