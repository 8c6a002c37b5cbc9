"""The segment learner (one per deployment) and the workers' copy of its current model.

**One writer.** Workers send anonymous feature samples to an internal topic
with a single partition, ``<app id>-segment-samples``. Kafka gives a
partition to exactly one member of the consumer group, so exactly one worker
runs the learner at a time, whichever it is, and another takes over when it
leaves (resuming from the last published snapshot). No leader election of our
own, and River's model, which is not thread-safe, has one owner.

**Publication.** Every ``TRACKER_SEGMENT_PUBLISH_SECONDS`` the learner writes
the snapshot (plain JSON, ``schema``
:data:`~tracker.models.segments.SNAPSHOT_SCHEMA`) under a new versioned key,
then swaps the pointer ``trk:v1:segments:{<app id>}:current`` to that version
in the same MULTI (one hash tag, one slot). Readers follow the pointer and read
an immutable snapshot; old versions expire after a day. A snapshot of another
schema (written before an upgrade) is ignored: the learner starts afresh and
numbers its versions on from it, and workers assign no new segments until it
publishes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from redis.asyncio import Redis

from tracker import keys
from tracker.models.segments import SNAPSHOT_SCHEMA, SegmentLearner
from tracker.settings import Settings
from tracker.streams import metrics

log = logging.getLogger(__name__)

OLD_VERSION_TTL_SECONDS = 24 * 3600
HALFLIFE = 0.05
SEED = 42


async def load_snapshot(redis: Redis, app_id: str) -> dict[str, Any] | None:
    """The current published snapshot, or None if there is none (or it cannot be read)."""
    version = await redis.get(keys.segments_current(app_id))
    if version is None:
        return None
    raw = await redis.get(keys.segments_model(app_id, int(version)))
    if raw is None:
        return None
    snapshot = orjson.loads(raw)
    if snapshot.get("schema") != SNAPSHOT_SCHEMA:
        log.warning("segment snapshot schema %r is not %r; ignored", snapshot.get("schema"), SNAPSHOT_SCHEMA)
        return None
    return snapshot


class LearnerHost:
    """Runs the learner inside the agent that owns the samples partition."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.learner: SegmentLearner | None = None
        self.version = 0
        self._published_samples = -1

    async def _ensure(self) -> SegmentLearner:
        current = await self.redis.get(keys.segments_current(self.settings.worker_app_id))
        if self.learner is not None and current is not None and int(current) != self.version:
            # Another worker owned the samples partition meanwhile and published: resume from it.
            self.learner = None
        if self.learner is None:
            snapshot = await load_snapshot(self.redis, self.settings.worker_app_id)
            clusters = self.settings.segment_clusters
            if snapshot is not None:
                self.version = int(snapshot["version"])
                self.learner = SegmentLearner.from_snapshot(
                    snapshot, clusters=clusters, halflife=HALFLIFE, seed=SEED
                )
            else:
                self.learner = SegmentLearner(clusters=clusters, halflife=HALFLIFE, seed=SEED)
                if current is not None:
                    # A snapshot of an older schema (ignored): learn afresh, number on from it.
                    self.version = int(current)
        return self.learner

    def forget(self) -> None:
        """The samples partition went to another worker: it is the writer now."""
        self.learner = None

    async def learn(self, samples: list[bytes]) -> None:
        learner = await self._ensure()
        for raw in samples:
            try:
                features = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            learner.learn({k: float(v) for k, v in features.items()})
        metrics.SEGMENT_SAMPLES.inc(len(samples))

    async def publish(self) -> int | None:
        """Write the snapshot under a new version and point readers at it."""
        learner = self.learner
        if learner is None or learner.samples == self._published_samples:
            return None
        version = self.version + 1
        snapshot = learner.snapshot(version=version, created_at=time.time_ns() // 1_000_000)
        app_id = self.settings.worker_app_id
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.segments_model(app_id, version), orjson.dumps(snapshot))
            pipe.set(keys.segments_current(app_id), str(version))
            if self.version:
                # Readers holding the previous version keep it for a while; then it goes.
                pipe.expire(keys.segments_model(app_id, self.version), OLD_VERSION_TTL_SECONDS)
            await pipe.execute()
        self.version = version
        self._published_samples = learner.samples
        log.info("published segment model version %d (%d samples)", version, learner.samples)
        return version
