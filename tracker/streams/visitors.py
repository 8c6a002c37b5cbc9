"""The ``visitors`` agent's work: fold a batch of records into visitor states, then write.

One batch at a time (from :mod:`tracker.streams.intake`), in this order, so that a crash at any
point loses nothing and counts nothing twice:

0. admit the records in input order (:mod:`tracker.streams.positions`): a record above its
   partition's stored position means the consumer skipped some; it is left out and the
   partition is sought back;
1. fold every record into its visitor's :class:`VisitorState` (pure, in memory);
2. write the sessions those records closed to ``sessions`` and wait for Kafka's
   acknowledgement (a session must be durable before the state that says it
   was emitted);
3. set the changed states in the table, then each input partition's new position, and
   queue them in that order on the changelog (:mod:`tracker.streams.changelog`: a position
   restored from it implies the states it covers);
4. write the profiles to Redis in one pipeline (retried until it succeeds);
5. wait until the changelog writes are acknowledged;
6. write erasure confirmations, then acknowledge the records.

After a crash Faust restores the table from the changelog and re-reads the
records after the last committed offset: those a state already holds are
skipped by offset (``replayed``) and their profile is written to Redis again,
in case the crash came between steps 3 and 4.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
import pydantic
from faust.streams import _current_event
from faust.types import TP, Message
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tracker import keys
from tracker.models.profile import ProfileConfig
from tracker.models.rewards import AttributionConfig, Feedback, Reward, VisitorRewards
from tracker.models.segments import assign, profile_features
from tracker.models.sessions import SessionRules
from tracker.models.visitor_state import VisitorState
from tracker.redisconn import PackedPipeline, background_client
from tracker.schema import SessionRecord, parse_tracked
from tracker.settings import Settings
from tracker.streams import metrics
from tracker.streams.changelog import ChangelogRecord, ChangelogWriter
from tracker.streams.control import Control, key_partition
from tracker.streams.positions import (
    InputPosition,
    Rewinds,
    StallWatch,
    TopicPartition,
    classify,
    position_key,
)

log = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 2.0


def profile_config(settings: Settings) -> ProfileConfig:
    return ProfileConfig(
        half_life_seconds=settings.interest_half_life_seconds,
        product_half_life_seconds=settings.product_half_life_seconds,
        engagement_half_life_seconds=settings.engagement_half_life_seconds,
        dedupe_window=settings.dedupe_window,
        sessions=SessionRules(
            gap_ms=int(settings.session_gap_seconds * 1000), split_on_source=settings.session_split_on_source
        ),
    )


def split_key(key: bytes) -> tuple[str, str]:
    site_id, _, visitor_id = key.decode().partition(":")
    return site_id, visitor_id


class _Placed:
    """Stands for Faust's current event where its stores read one: only its ``message``."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Message) -> None:
        self.message = message


class _Placement:
    """Points ``faust.current_event()`` at a record of the partition a table change belongs to:
    a partitioned store (rocksdb) places a change by "the event being processed", and a batch
    holds records of several partitions. One stand-in per partition, kept alive here (the
    context variable holds a weak reference, as Faust's streams set it)."""

    def __init__(self) -> None:
        self._placed: dict[int, _Placed] = {}
        self._current: int | None = None

    def at(self, message: Message) -> None:
        partition = message.partition
        if partition == self._current:
            return
        placed = self._placed.get(partition)
        if placed is None:
            placed = self._placed[partition] = _Placed(message)
        _current_event.set(weakref.ref(placed))  # type: ignore[arg-type]
        self._current = partition

    def end(self) -> None:
        _current_event.set(None)
        self._placed.clear()
        self._current = None


# Input partition -> (an offset, a record of that partition).
_Marks = dict[TopicPartition, tuple[int, Message]]


@dataclass
class _Batch:
    """What one batch changed, collected before anything is written."""

    changed: dict[bytes, tuple[VisitorState, Message]] = field(default_factory=dict)
    deleted: dict[bytes, Message] = field(default_factory=dict)
    # States whose table entry is up to date but whose Redis profile may not be (replays).
    rewrite: dict[bytes, VisitorState] = field(default_factory=dict)
    sessions: list[tuple[bytes, SessionRecord]] = field(default_factory=list)
    rewards: list[Reward] = field(default_factory=list)
    # Changed states whose profile did not change (their reward join, caps): no profile write.
    quiet: set[bytes] = field(default_factory=set)
    # Visitors whose frequency-cap counts changed (a decision counted): their caps key is written.
    caps: set[bytes] = field(default_factory=set)
    erasures: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    lifted: set[bytes] = field(default_factory=set)
    received: list[int] = field(default_factory=list)
    # (event type, outcome) -> records: counted once per batch, not per record.
    processed: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Input partition -> (next offset to process, the last record of it in this batch).
    positions: _Marks = field(default_factory=dict)


class VisitorProcessor:
    """Holds what the agent, the sweep and the timers share inside one worker process."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        *,
        table: faust.Table,
        sessions_topic: faust.TopicT,
        control_topic: faust.TopicT,
        samples_topic: faust.TopicT | None,
        rewards_topic: faust.TopicT | None = None,
        changelog: ChangelogWriter,
    ) -> None:
        self.app = app
        self.settings = settings
        self.table = table
        self.sessions_topic = sessions_topic
        self.control_topic = control_topic
        self.samples_topic = samples_topic
        self.rewards_topic = rewards_topic
        self.changelog = changelog
        self.attribution = AttributionConfig.from_settings(settings)
        self.config = profile_config(settings)
        self.retention_ms = settings.profile_retention_seconds * 1000
        # Serialises batches with the sweep's and the Redis resync's reads of the table.
        self.lock = asyncio.Lock()
        self.segment_snapshot: dict[str, Any] | None = None
        self._redis: Redis | None = None
        self._acking: set[asyncio.Future] = set()
        self._mismatch_logged = False
        self._late_logged_until = 0.0
        self.rewinds = Rewinds()
        self.stalls = StallWatch()
        # Zero series from the start, so dashboards and alerts see 0, not "no data".
        for topic in (settings.topic_events, settings.topic_decisions, *control_topic.topics):
            for counter in (metrics.INPUT_RECORDS_AHEAD, metrics.INPUT_REWINDS, metrics.INPUT_RECORDS_LOST):
                counter.labels(topic=topic)
        for group in ("policy", "holdout"):
            for impressed in ("true", "false"):
                for clicked in ("true", "false"):
                    metrics.REWARDS_EMITTED.labels(group=group, impressed=impressed, clicked=clicked)

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = background_client(self.settings.redis_url)
        return self._redis

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # --- the agent's entry point -------------------------------------------------------------

    async def process(self, records: Sequence[Message]) -> None:
        """Process one batch; its records are acknowledged (and so may be committed) once the
        table changes are durable in Kafka, which is awaited in the background while the next
        batch is processed."""
        started = time.perf_counter()
        async with self.lock:
            admitted, positions, gaps = self._admit(records)
            batch = self._fold(admitted)
            batch.positions = positions
            durable = await self._write(batch)
            if gaps:
                durable.extend(await self._rewind(gaps))
        task = asyncio.ensure_future(self._ack_when_durable(records, durable))
        self._acking.add(task)
        task.add_done_callback(self._acking.discard)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_RECORDS.observe(len(records))

    async def _ack_when_durable(self, records: Sequence[Message], durable: list[asyncio.Future]) -> None:
        try:
            await asyncio.gather(*durable)
        except Exception as exc:
            # Not acknowledged: the offsets stay uncommitted, so these records are read again after
            # a restart (and skipped where the table already has them). Faust stops on a failed
            # producer anyway.
            log.error("a table change did not reach the changelog (%r); records left unacknowledged", exc)
            return
        ack = self.app.consumer.ack
        for message in records:
            ack(message)

    # --- 0. admit ---------------------------------------------------------------------------

    def _stored_position(self, tp: TopicPartition) -> int | None:
        value = self.table.get(position_key(*tp))
        return value.next_offset if isinstance(value, InputPosition) else None

    def _admit(self, records: Sequence[Message]) -> tuple[list[Message], _Marks, _Marks]:
        """The records to fold, the partitions' new positions, and the partitions with a gap
        (expected offset, first record past it). Records past a gap are left out (and still
        acknowledged: the table's positions, not the committed offsets, say what was processed)."""
        expected: dict[TopicPartition, int | None] = {}
        admitted: list[Message] = []
        positions: _Marks = {}
        gaps: _Marks = {}
        for message in records:
            tp = (message.topic, message.partition)
            if tp not in expected:
                expected[tp] = self._stored_position(tp)
            verdict = classify(expected[tp], message.offset)
            if verdict == "ahead":
                want = expected[tp]
                assert want is not None
                gaps.setdefault(tp, (want, message))
                metrics.INPUT_RECORDS_AHEAD.labels(topic=message.topic).inc()
                continue
            if verdict == "next":
                expected[tp] = message.offset + 1
                positions[tp] = (message.offset + 1, message)
                self.rewinds.arrived(tp)
            admitted.append(message)
        return admitted, positions, gaps

    async def _rewind(self, gaps: _Marks) -> list[asyncio.Future]:
        """Seek each partition with a gap back to its expected record (see
        :mod:`tracker.streams.positions`); return the changelog write of moved positions."""
        moved: list[ChangelogRecord] = []
        now = time.monotonic()
        consumer = self.app.consumer
        for tp, (target, first_ahead) in gaps.items():
            topic, partition = tp
            if not self.rewinds.should_seek(tp, target, now):
                continue
            faust_tp = TP(topic, partition)
            earliest = (await consumer.earliest_offsets(faust_tp)).get(faust_tp)
            seek_to = target
            if earliest is not None and earliest > target:
                seek_to = earliest
                log.error(
                    "records %d-%d of %s[%d] were deleted by retention before this worker "
                    "processed them: counted as lost; give the topic a longer retention than "
                    "the longest worker outage",
                    target,
                    earliest - 1,
                    topic,
                    partition,
                )
            elif self.rewinds.exhausted(tp, target):
                seek_to = first_ahead.offset
                log.error(
                    "records %d-%d of %s[%d] never arrived after %d seeks: counted as lost (is a "
                    "transactional producer writing this topic? its offsets are not contiguous)",
                    target,
                    seek_to - 1,
                    topic,
                    partition,
                    self.rewinds.max_seeks,
                )
            if seek_to != target:
                metrics.INPUT_RECORDS_LOST.labels(topic=topic).inc(seek_to - target)
                moved.append(self._set_position(tp, seek_to, first_ahead))
                self.rewinds.arrived(tp)
            else:
                log.warning(
                    "the consumer skipped records of %s[%d] from offset %d (first seen: %d); "
                    "seeking back to process them",
                    topic,
                    partition,
                    target,
                    first_ahead.offset,
                )
                metrics.INPUT_REWINDS.labels(topic=topic).inc()
            await consumer.seek(faust_tp, seek_to)
        return [await self.changelog.write(moved)] if moved else []

    async def retry_rewinds(self) -> None:
        due = self.rewinds.due(time.monotonic())
        assigned = self._assigned() if due else set()
        for (topic, partition), target in due:
            if (topic, partition) not in assigned:
                self.rewinds.arrived((topic, partition))  # no longer ours: its new owner checks
                continue
            log.warning("seeking %s[%d] back to %d again", topic, partition, target)
            metrics.INPUT_REWINDS.labels(topic=topic).inc()
            await self.app.consumer.seek(TP(topic, partition), target)

    async def check_stalls(self) -> None:
        """Seek back the input partitions that hold records past their stored position while
        that position does not move (a skipped last record: no later one shows the gap)."""
        consumer = self.app.consumer
        inputs = {self.settings.topic_events, self.settings.topic_decisions, *self.control_topic.topics}
        now = time.monotonic()
        for tp in consumer.assignment():
            if tp.topic not in inputs:
                continue
            key = (tp.topic, tp.partition)
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # not fetched yet: nothing known
                continue
            position = self._stored_position(key)
            if not self.stalls.stalled(key, position, highwater, now):
                continue
            assert position is not None
            if self.rewinds.should_seek(key, position, now):
                log.warning(
                    "%s[%d] holds records up to %d but stays at %d: seeking back to process them",
                    tp.topic,
                    tp.partition,
                    highwater - 1,
                    position,
                )
                metrics.INPUT_REWINDS.labels(topic=tp.topic).inc()
                await consumer.seek(tp, position)

    def _assigned(self) -> set[TopicPartition]:
        return {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}

    def _set_position(self, tp: TopicPartition, next_offset: int, message: Message) -> ChangelogRecord:
        """Store a partition's position in the table; return its changelog record (``message`` is
        a record of that partition: the change is placed by it)."""
        key, position = position_key(*tp), InputPosition(next_offset)
        placement = _Placement()
        placement.at(message)
        self.table.data[key] = position
        placement.end()
        return (message.partition, key, position.to_bytes())

    # --- 1. fold ----------------------------------------------------------------------------

    def _state(self, batch: _Batch, key: bytes) -> VisitorState | None:
        if key in batch.changed:
            return batch.changed[key][0]
        if key in batch.deleted:
            return None
        return self.table.data.get(key)  # the store: Faust's table wrapper costs more than the read

    def _fold(self, records: Sequence[Message]) -> _Batch:
        batch = _Batch()
        events_topic, decisions_topic = self.settings.topic_events, self.settings.topic_decisions
        for message in records:
            key = message.key
            if not isinstance(key, bytes) or b":" not in key:
                log.warning("record without a site:visitor key on %s; skipped", message.topic)
                continue
            if message.topic == events_topic:
                self._fold_event(batch, message, key)
            elif message.topic == decisions_topic:
                self._fold_decision(batch, message, key)
            else:
                self._fold_control(batch, message, key)
        for (kind, outcome), count in batch.processed.items():
            metrics.EVENTS_PROCESSED.labels(type=kind, outcome=outcome).inc(count)
        return batch

    def _fold_event(self, batch: _Batch, message: Message, key: bytes) -> None:
        try:
            tracked = parse_tracked(message.value)
        except pydantic.ValidationError:
            # The collector validated it, so this is a producer bug or a schema migration gap:
            # count it and move on rather than stall the partition.
            batch.processed["unknown", "invalid"] += 1
            return
        if tracked.server.anonymous:
            # A no-JavaScript pixel hit: its id is random per hit, not a visitor. A profile of one
            # page view would only fill Redis and the table until retention; Kafka keeps it for
            # aggregate analytics. (Flagged bots are profiled: the collector's bot policy decides.)
            batch.processed[tracked.event.type.value, "anonymous"] += 1
            return
        state = self._state(batch, key)
        if state is None:
            state = VisitorState.new(tracked.event.site_id, tracked.event.visitor_id)
        if state.partition != message.partition:
            self._check_partitioner(key, message.partition)
        result = state.apply(tracked, partition=message.partition, offset=message.offset, config=self.config)
        batch.processed[tracked.event.type.value, result.outcome] += 1
        if result.changed:
            batch.changed[key] = (state, message)
            batch.quiet.discard(key)
            batch.rewrite.pop(key, None)
            feedback = Feedback.from_event(tracked.event, received_at=tracked.server.received_at)
            if feedback is not None:
                joined = self._join(state, lambda rewards: rewards.on_event(feedback))
                metrics.FEEDBACK.labels(kind=feedback.kind, outcome=joined).inc()
                if joined == "finished":
                    self._warn_late(feedback)
            batch.received.append(tracked.server.received_at)
            if result.outcome == "reprofiled":
                batch.lifted.add(key)
        elif result.outcome == "replayed":
            metrics.DUPLICATES_SKIPPED.labels(reason="offset").inc()
            if (key not in batch.changed or key in batch.quiet) and state.profile is not None:
                batch.rewrite[key] = state
        elif result.outcome == "duplicate":
            metrics.DUPLICATES_SKIPPED.labels(reason="event_id").inc()
        if result.record is not None:
            batch.sessions.append((key, result.record))

    # --- offer rewards: decisions joined with their impressions, clicks and purchases ---------

    def _join(self, state: VisitorState, change: Any) -> Any:
        """Apply ``change`` to the visitor's reward join state and store it back."""
        rewards = (
            VisitorRewards.from_dict(state.rewards, self.attribution)
            if state.rewards is not None
            else VisitorRewards(state.site_id, state.visitor_id, self.attribution)
        )
        result = change(rewards)
        if rewards.idle:
            state.rewards, state.rewards_due = None, None
        else:
            state.rewards, state.rewards_due = rewards.to_dict(), rewards.next_due_ms
        return result

    def _warn_late(self, feedback: Feedback) -> None:
        """Feedback after its decision's reward: the click (or impression) is lost to learning.
        Logged at most once a minute; ``tracker_worker_feedback_total{outcome="finished"}`` counts
        each."""
        now = time.monotonic()
        if now < self._late_logged_until:
            return
        self._late_logged_until = now + 60.0
        log.warning(
            "an %s reached the worker %.1f s after it happened, after its decision's reward was emitted: "
            "lost to learning. The pipeline's delays exceed the attribution lateness (%.0f s): "
            "raise TRACKER_ATTRIBUTION_LATENESS_SECONDS, or find what delays events (collector "
            "or worker overloaded, clients retrying)",
            feedback.kind,
            max(0, self._now_ms() - feedback.at_ms) / 1000,
            self.attribution.lateness_ms / 1000,
        )

    def _fold_decision(self, batch: _Batch, message: Message, key: bytes) -> None:
        """A record of the ``decisions`` topic: wait for its feedback (a redelivery is ignored)."""
        try:
            record = orjson.loads(message.value)
            site_id, visitor_id = record["site_id"], record["visitor_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.error("unreadable decision record skipped: %r", exc)
            metrics.DECISIONS_JOINED.labels(outcome="invalid").inc()
            return
        state = self._state(batch, key)
        if state is None:
            state = VisitorState(site_id, visitor_id, profile=None)
        if state.partition < 0:
            state.partition = message.partition  # decisions are partitioned like events
        if state.erased is not None:
            metrics.DECISIONS_JOINED.labels(outcome="erased").inc()
            return
        try:
            added = self._join(state, lambda rewards: rewards.add_decision(record))
        except (KeyError, TypeError, ValueError) as exc:
            log.error("unreadable decision record skipped: %r", exc)
            metrics.DECISIONS_JOINED.labels(outcome="invalid").inc()
            return
        metrics.DECISIONS_JOINED.labels(outcome="joined" if added else "ignored").inc()
        if added:
            # Counted once, as the join takes it in: the one writer of the visitor's caps.
            state.count_served(record)
            batch.caps.add(key)
            self._changed_quietly(batch, key, state, message)

    @staticmethod
    def _changed_quietly(batch: _Batch, key: bytes, state: VisitorState, message: Message) -> None:
        """The table entry changed but not the profile in Redis (unless something else did)."""
        if key not in batch.changed:
            batch.quiet.add(key)
        batch.changed[key] = (state, message)

    def _check_partitioner(self, key: bytes, partition: int) -> None:
        """Erasures are routed with murmur2 (Kafka's default partitioner, the Java client's and
        aiokafka's); a producer using another one (librdkafka's default is CRC32) breaks that."""
        count = (
            self.app.consumer.topic_partitions(self.settings.topic_events) or self.settings.topic_partitions
        )
        if key_partition(key, count) != partition:
            metrics.PARTITION_MISMATCH.inc()
            if not self._mismatch_logged:
                self._mismatch_logged = True
                log.error(
                    "events for %r arrive on partition %d, not %d as murmur2 puts them: set the "
                    "producer's partitioner to murmur2 (librdkafka: partitioner=murmur2_random), or "
                    "erasure requests will not reach these visitors in order",
                    key.split(b":", 1)[0].decode(errors="replace"),
                    partition,
                    key_partition(key, count),
                )

    def _fold_control(self, batch: _Batch, message: Message, key: bytes) -> None:
        try:
            control = Control.from_bytes(message.value)
        except (ValueError, KeyError, pydantic.ValidationError) as exc:
            log.error("unreadable control record on %s: %s", message.topic, exc)
            return
        state = self._state(batch, key)
        if control.kind == "erase" and control.erasure is not None:
            request = control.erasure
            if state is None:
                state = VisitorState(request.site_id, request.visitor_id, profile=None)
            state.partition = message.partition
            if state.erase(request.request_id, request.requested_at):
                metrics.ERASURES.labels(outcome="erased").inc()
                batch.changed[key] = (state, message)
            else:
                metrics.ERASURES.labels(outcome="duplicate").inc()
            batch.rewrite.pop(key, None)
            batch.lifted.discard(key)
            batch.quiet.discard(key)
            batch.erasures.append((key, request.model_dump(mode="json")))
        elif state is None:
            return
        elif control.kind == "idle" and control.session_id is not None:
            record = state.close_idle(control.session_id, control.events)
            if record is not None:
                batch.sessions.append((key, record))
                batch.changed[key] = (state, message)
        elif control.kind == "rewards":
            if state.rewards is None:
                return
            before = state.rewards
            due = self._join(state, lambda rewards: rewards.on_tick(control.at))
            batch.rewards.extend(due)
            if due or state.rewards != before:  # also a memory or orphans dropped
                self._changed_quietly(batch, key, state, message)
        elif control.kind == "expire" and state.expired(self._now_ms(), self.retention_ms):
            batch.changed.pop(key, None)
            batch.rewrite.pop(key, None)
            batch.deleted[key] = message

    # --- 2..6. write ------------------------------------------------------------------------

    async def _write(self, batch: _Batch) -> list[asyncio.Future]:
        """Steps 2-6 of the module docstring; return the changelog writes to wait for."""
        if batch.sessions:
            await asyncio.gather(*(self._send_session(key, record) for key, record in batch.sessions))
            for _, record in batch.sessions:
                metrics.SESSIONS_CLOSED.labels(closed_by=record.closed_by).inc()
        if batch.rewards and self.rewards_topic is not None:
            # Durable before the state that no longer holds them: a crash re-emits, never loses
            # (the trainer recognises a redelivered reward by its decision id).
            await asyncio.gather(*(self._send_reward(reward) for reward in batch.rewards))
        durable = [await self.changelog.write(self._write_table(batch))]
        if batch.changed or batch.deleted or batch.rewrite:
            await self._retry("profile and caps write", lambda: self._write_redis(batch))
        if batch.erasures:
            # Confirmed only once the tombstone is durable in the changelog, not just in memory.
            await asyncio.gather(*durable)
            await self._retry("erasure confirmation", lambda: self._confirm_erasures(batch))
        now = time.time()
        for received_at in batch.received:
            metrics.PROCESSING_LAG.observe(max(0.0, now - received_at / 1000))
        if self.samples_topic is not None:
            self._send_samples(batch)
        return durable

    def _write_table(self, batch: _Batch) -> list[ChangelogRecord]:
        """Set the changed states in the table; return their changelog records, each for the
        changelog partition of the visitor (what ``table[key] = state`` does, in one batch).

        Each change is placed by its visitor's own record (see :class:`_Placement`)."""
        store = self.table.data
        records: list[ChangelogRecord] = []
        placement = _Placement()
        for key, (state, message) in batch.changed.items():
            placement.at(message)
            store[key] = state
            records.append((message.partition, key, state.to_bytes()))
        for key, message in batch.deleted.items():
            placement.at(message)
            if key in store:
                del store[key]
            records.append((message.partition, key, None))
        placement.end()
        # After the states: a position restored from the changelog implies the states it covers.
        for tp, (next_offset, message) in batch.positions.items():
            records.append(self._set_position(tp, next_offset, message))
        return records

    async def _send_reward(self, reward: Reward) -> None:
        await self._send_retrying(self.rewards_topic, None, orjson.dumps(reward.to_dict()))
        metrics.REWARDS_EMITTED.labels(
            group="holdout" if reward.holdout else "policy",
            impressed=str(reward.impressed).lower(),
            clicked=str(reward.clicked).lower(),
        ).inc()

    async def _send_session(self, key: bytes, record: SessionRecord) -> None:
        await self._send_retrying(self.sessions_topic, key, record.model_dump_json().encode())

    @staticmethod
    async def _send_retrying(topic: Any, key: bytes | None, value: bytes) -> None:
        """Send and wait for Kafka's acknowledgement, retrying: a session or reward is never skipped."""
        delay = 0.05
        while True:
            try:
                future = await topic.send(key=key, value=value)
                await future
                return
            except Exception as exc:  # any producer failure: retry
                log.warning("writing to %s failed (%r); retrying", topic, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _project(self, state: VisitorState) -> bytes:
        profile = state.profile
        assert profile is not None
        snapshot = self.segment_snapshot
        if snapshot is not None:
            profile.segment = assign(snapshot, profile_features(profile))
            profile.segment_version = snapshot["version"]
        return orjson.dumps(profile.to_dict(self.config))

    async def _write_redis(self, batch: _Batch) -> None:
        ttl = self.settings.profile_retention_seconds
        pipe = PackedPipeline()
        for key, (state, _) in batch.changed.items():
            if key in batch.quiet:
                continue
            site_id, visitor_id = split_key(key)
            if state.profile is not None:
                pipe.set_ex(keys.profile(site_id, visitor_id), self._project(state), ttl)
                if key in batch.lifted:
                    pipe.command("DEL", keys.erased(site_id, visitor_id))
            elif state.erased is not None:
                pipe.command("DEL", keys.profile(site_id, visitor_id), keys.caps(site_id, visitor_id))
                tombstone = {**state.erased, "done_at": self._now_ms()}
                pipe.set_ex(keys.erased(site_id, visitor_id), orjson.dumps(tombstone), ttl)
        for key in batch.caps:
            caps = batch.changed[key][0].caps if key in batch.changed else None
            if caps is not None:  # else erased or expired later in this batch: deleted below
                site_id, visitor_id = split_key(key)
                pipe.set_ex(keys.caps(site_id, visitor_id), orjson.dumps(caps.to_dict()), ttl)
        for key, state in batch.rewrite.items():
            site_id, visitor_id = split_key(key)
            pipe.set_ex(keys.profile(site_id, visitor_id), self._project(state), ttl)
        for key in batch.deleted:
            site_id, visitor_id = split_key(key)
            pipe.command(
                "DEL",
                keys.profile(site_id, visitor_id),
                keys.erased(site_id, visitor_id),
                keys.caps(site_id, visitor_id),
            )
        await pipe.execute(self.redis)

    async def _confirm_erasures(self, batch: _Batch) -> None:
        pipe = self.redis.pipeline(transaction=False)
        done_at = self._now_ms()
        for _, request in batch.erasures:
            confirmation = {**request, "status": "done", "done_at": done_at}
            confirmation.pop("schema_version", None)
            pipe.set(
                keys.erasure_done(request["request_id"]),
                orjson.dumps(confirmation),
                ex=self.settings.profile_retention_seconds,
            )
        await pipe.execute()

    async def _retry(self, what: str, write: Any) -> None:
        """Redis down: wait and retry. The records stay unacknowledged meanwhile."""
        delay = 0.05
        while True:
            try:
                await write()
                return
            except (RedisError, OSError) as exc:
                metrics.REDIS_ERRORS.inc()
                log.warning("%s to Redis failed (%r); retrying in %.2fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _send_samples(self, batch: _Batch) -> None:
        """One profile update in ``segment_sample_every`` feeds the learner (no ids: anonymous)."""
        every = self.settings.segment_sample_every
        assert self.samples_topic is not None
        for key, (state, _) in batch.changed.items():
            if key in batch.quiet:
                continue
            profile = state.profile
            if profile is not None and profile.events_seen % every == 0:
                self.samples_topic.send_soon(value=orjson.dumps(profile_features(profile)))

    # --- the idle sweep and housekeeping -------------------------------------------------------

    @staticmethod
    def _now_ms() -> int:
        return time.time_ns() // 1_000_000

    def active_partitions(self) -> set[int]:
        topic = self.settings.topic_events
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}

    async def sweep(self) -> None:
        """Ask for idle sessions to be closed and expired entries dropped (via the control topic,
        so that the change is made by the agent, in order with the visitor's events)."""
        now = self._now_ms()
        gap_ms = self.config.sessions.gap_ms
        active = self.active_partitions()
        keys_count = open_sessions = 0
        requests: list[tuple[bytes, int, Control]] = []
        for n, (key, state) in enumerate(list(self.table.items())):
            if n % 1000 == 999:
                await asyncio.sleep(0)  # a big table must not stall the event loop
            if not isinstance(state, VisitorState) or state.partition not in active:
                continue
            keys_count += 1
            idle = state.idle_session(now, gap_ms)
            if (
                state.profile is not None
                and state.profile.session is not None
                and (
                    state.emitted is None
                    or state.emitted[:2] != [state.profile.session.id, state.profile.session.events]
                )
            ):
                open_sessions += 1
            if state.rewards_due is not None and state.rewards_due <= now:
                requests.append((key, state.partition, Control("rewards", at=now)))
            if idle is not None:
                requests.append((key, state.partition, Control("idle", session_id=idle[0], events=idle[1])))
            elif state.expired(now, self.retention_ms):
                requests.append((key, state.partition, Control("expire")))
        metrics.TABLE_KEYS.labels(table=self.table.name).set(keys_count)
        metrics.OPEN_SESSIONS.set(open_sessions)
        for key, partition, control in requests:
            await self.control_topic.send(key=key, value=control.to_bytes(), partition=partition)

    async def resync_redis(self) -> int:
        """Write every profile (and frequency-cap counts) of the active partitions to Redis
        again (after Redis lost them); the number of profiles written."""
        active = self.active_partitions()
        written = 0
        async with self.lock:
            pipe = self.redis.pipeline(transaction=False)
            ttl = self.settings.profile_retention_seconds
            for key, state in list(self.table.items()):
                if not isinstance(state, VisitorState) or state.partition not in active:
                    continue
                site_id, visitor_id = split_key(key)
                if state.caps is not None:
                    pipe.set(keys.caps(site_id, visitor_id), orjson.dumps(state.caps.to_dict()), ex=ttl)
                if state.profile is not None:
                    pipe.set(keys.profile(site_id, visitor_id), self._project(state), ex=ttl)
                    written += 1
                if len(pipe) >= 1000:
                    await pipe.execute()
            await pipe.execute()
        return written
