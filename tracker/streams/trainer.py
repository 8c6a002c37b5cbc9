"""The click-model trainer inside the worker: the one writer of the model.

The rewards topic has one partition, so exactly one worker (the one Faust
assigns it to) learns; River models are not thread-safe and must have one
writer. Each snapshot is written to Redis under its version, then the pointer
the offer API watches is swapped (:mod:`tracker.keys`: ``click_model`` and
``click_model_current``).

Rewards are acknowledged only once a snapshot that learned them is in Redis:
a worker that dies (or loses the partition) before publishing leaves them to
be read again by the next owner, which resumes from the last published
snapshot. A reward read twice by one trainer is recognised by its decision id.
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust
import orjson
from faust.types import EventT
from redis.asyncio import Redis

from tracker import keys
from tracker.models.learner import ClickModel, SnapshotError, decode_snapshot, encode_snapshot
from tracker.models.rewards import Reward
from tracker.models.trainer import Trainer
from tracker.settings import Settings
from tracker.streams import metrics

log = logging.getLogger(__name__)

# Readers holding the previous version keep it for a while; then it goes.
OLD_VERSION_TTL_SECONDS = 3600


class TrainerHost:
    """Runs the :class:`Trainer` inside the agent that owns the rewards partition."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.trainer: Trainer | None = None
        self.version: str | None = None
        self.lock = asyncio.Lock()
        self._stream: faust.StreamT | None = None
        self._unacked: list[EventT] = []

    def _options(self) -> dict:
        # Only rewards of offers the visitor saw teach anything about what they click.
        return {**Trainer.options_from(self.settings), "require_impression": True}

    async def _ensure(self) -> Trainer:
        app_id = self.settings.worker_app_id
        current = await self.redis.get(keys.click_model_current(app_id))
        current_version = current.decode() if current is not None else None
        if self.trainer is not None and current_version not in (None, self.version):
            # Another worker owned the rewards partition meanwhile and published: resume from it.
            self.trainer = None
        if self.trainer is None:
            raw = await self.redis.get(keys.click_model(app_id, current_version)) if current_version else None
            model = None
            if raw is not None:
                try:
                    model = decode_snapshot(raw)
                except SnapshotError as exc:
                    log.error("cannot resume from click model %s (%s); new model", current_version, exc)
            if model is None:
                model = ClickModel(learning_rate=self.settings.model_learning_rate)
                current_version = None
            self.trainer = Trainer(model, **self._options())
            self.version = current_version
        return self.trainer

    def forget(self) -> None:
        """The rewards partition went to another worker: it is the writer now, and the records
        not acknowledged here will be read again there."""
        self.trainer, self.version, self._unacked = None, None, []

    async def learn(self, stream: faust.StreamT, events: list[EventT]) -> None:
        async with self.lock:
            self._stream = stream
            trainer = await self._ensure()
            for event in events:
                try:
                    reward = Reward.from_dict(orjson.loads(event.value))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    log.error("unreadable reward skipped: %r", exc)
                    metrics.MODEL_UPDATES.labels(outcome="invalid").inc()
                    continue
                restarts = trainer.restarts
                learned = trainer.learn(reward)
                metrics.MODEL_UPDATES.labels(outcome="learned" if learned else "skipped").inc()
                if trainer.restarts != restarts:
                    metrics.EXPLORATION_RESTARTS.inc()
                    log.warning(
                        "click rate collapsed after %d rewards (drift?): exploration restarted, "
                        "weights shrunk to %g", trainer.model.updates, trainer.drift_shrink,
                    )  # fmt: skip
            self._unacked.extend(events)
            await self._publish_if_due()

    async def tick(self) -> None:
        """Publish what was learned since the last snapshot once its time is up."""
        async with self.lock:
            if self.trainer is not None:
                await self._publish_if_due()

    async def _publish_if_due(self) -> None:
        trainer = self.trainer
        assert trainer is not None
        now_ms = time.time_ns() // 1_000_000
        if trainer.should_publish(now_ms=now_ms):
            snapshot = trainer.publish(now_ms=now_ms, meta={"worker": self.settings.worker_app_id})
            version = str(snapshot["version"])
            app_id = self.settings.worker_app_id
            ttl = self.settings.profile_retention_seconds
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(keys.click_model(app_id, version), encode_snapshot(snapshot), ex=ttl)
                pipe.set(keys.click_model_current(app_id), version)
                if self.version and self.version != version:
                    pipe.expire(keys.click_model(app_id, self.version), OLD_VERSION_TTL_SECONDS)
                await pipe.execute()
            self.version = version
            metrics.MODEL_PUBLISHED.inc()
            metrics.MODEL_UPDATES_PUBLISHED.set(trainer.model.updates)
            log.info("published click model %s (%d rewards learned)", version, trainer.model.updates)
        if trainer.unpublished:
            return  # learned but not published yet: the rewards stay unacknowledged
        stream, unacked = self._stream, self._unacked
        self._unacked = []
        if stream is not None:
            for event in unacked:
                await stream.ack(event)
