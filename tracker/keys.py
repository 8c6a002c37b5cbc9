"""The Redis key layout: every key the project reads or writes is built here.

Keys that belong to one visitor carry the hash tag ``{site:visitor}`` so that,
on Redis Cluster, everything touched for one visitor in a pipeline or script
lives in one slot. ``docs/ARCHITECTURE.md`` lists each key with its writer and
readers.
"""

from __future__ import annotations

PREFIX = "trk:v1"


def visitor_tag(site_id: str, visitor_id: str) -> str:
    """The Redis Cluster hash tag shared by all of a visitor's keys."""
    return f"{{{site_id}:{visitor_id}}}"


def profile(site_id: str, visitor_id: str) -> str:
    """String (JSON): the visitor's live profile. Writer: stream worker. Reader: offer API."""
    return f"{PREFIX}:profile:{visitor_tag(site_id, visitor_id)}"


def caps(site_id: str, visitor_id: str) -> str:
    """String (JSON, :meth:`tracker.models.caps.ImpressionCounts.to_dict`): the offers served to
    the visitor this session and today, for frequency caps. Writer: stream worker (from the
    ``decisions`` topic). Reader: offer API, with the profile in one round trip.

    (It replaced ``trk:v1:serving:{site:visitor}``, a hash the offer API wrote itself; left over
    ones are read by nothing and expire with their TTL.)"""
    return f"{PREFIX}:caps:{visitor_tag(site_id, visitor_id)}"


def erased(site_id: str, visitor_id: str) -> str:
    """String (JSON): erasure tombstone {request_id, requested_at, done_at}; TTL = retention.
    Present while the visitor is not re-profiled (until a later consent grant). Writer: stream
    worker. Readers: operators, the admin API (#7)."""
    return f"{PREFIX}:erased:{visitor_tag(site_id, visitor_id)}"


def erasure_done(request_id: str) -> str:
    """String (JSON): confirmation that erasure request ``request_id`` was carried out; TTL =
    retention. Writer: stream worker. Readers: operators, the admin API (#7)."""
    return f"{PREFIX}:erasure:{request_id}"


def segments_current(app_id: str) -> str:
    """String: the version number of the segment model workers of ``app_id`` assign with (a
    pointer swapped after the versioned model is written). Writer: the segment learner."""
    return f"{PREFIX}:segments:{{{app_id}}}:current"


def segments_model(app_id: str, version: int) -> str:
    """String (JSON): segment centroids, version ``version`` (immutable once written; old
    versions expire). Writer: the segment learner. Readers: stream workers, dashboards."""
    return f"{PREFIX}:segments:{{{app_id}}}:model:{version}"


def click_model_current(app_id: str) -> str:
    """String: the version of the click model to decide with (a pointer swapped after the
    versioned snapshot is written). Writer: the trainer (stream worker owning the rewards
    partition). Reader: the offer API."""
    return f"{PREFIX}:model:{{{app_id}}}:click:current"


def click_model(app_id: str, version: str) -> str:
    """String (JSON, :func:`tracker.models.learner.encode_snapshot`): click model snapshot
    ``version`` (immutable once written; old versions expire). Writer: the trainer. Reader:
    the offer API (on a new pointer), a restarted trainer."""
    return f"{PREFIX}:model:{{{app_id}}}:click:{version}"


def catalogue_current(app_id: str) -> str:
    """String: the version (content hash) of the offer catalogue every offer API replica of
    ``app_id`` serves (the pointer, swapped by a Lua compare-and-set after the snapshot is
    written). Writers: the admin API, a replica seeding it from its file (only while absent) or
    importing a changed file. Reader: every offer API replica (probed every
    ``TRACKER_CATALOGUE_REFRESH_SECONDS``)."""
    return f"{PREFIX}:catalogue:{{{app_id}}}:current"


def catalogue(app_id: str, version: str) -> str:
    """String (JSON, :mod:`tracker.serve.catalogue_store`): catalogue snapshot ``version``
    (content-addressed; a replaced version expires after a week). Same writers and readers as
    :func:`catalogue_current`, whose hash tag it shares."""
    return f"{PREFIX}:catalogue:{{{app_id}}}:{version}"
