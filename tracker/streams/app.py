"""The Faust application: events -> sessions, live profiles and segments.

Built by :func:`create_app` so that tests and the CLI configure it from
settings; no broker address, store or port is a literal here.

Agents, tables and timers (``docs/ARCHITECTURE.md`` has the whole picture):

- ``visitors`` agent on ``events``, ``decisions`` and the internal control
  topic: folds each batch into the ``visitors`` table (one :class:`VisitorState`
  per visitor, changelogged to Kafka), writes profiles to Redis, and joins each
  offer decision with its impression, click and purchase into a reward
  (:mod:`tracker.streams.visitors`);
- ``trainer`` agent on the single-partition rewards topic: the one writer of the
  click model, publishing snapshots to Redis for the offer API
  (:mod:`tracker.streams.trainer`);
- ``erasures`` agent: re-keys each erasure request onto the control topic,
  partitioned like the visitor's events, so it is applied in order with them;
- ``segments`` agent on the single-partition samples topic: the one learner
  (:mod:`tracker.streams.segments`);
- timers: the idle-session sweep over locally owned partitions, the segment
  model refresh, consumer lag, and a Redis resync when Redis restarted empty.
"""

from __future__ import annotations

import logging

import faust
import prometheus_client
import pydantic
from faust.web import Request, Response, View
from redis.exceptions import RedisError

from tracker.heap import settle_heap
from tracker.redisconn import background_client
from tracker.schema import ErasureRequest, partition_key
from tracker.settings import Settings
from tracker.streams import codec, intake, metrics, read_offsets
from tracker.streams.changelog import ChangelogWriter
from tracker.streams.control import Control, key_partition
from tracker.streams.segments import LearnerHost, load_snapshot
from tracker.streams.trainer import TrainerHost
from tracker.streams.visitors import VisitorProcessor

log = logging.getLogger(__name__)

# aiohttp refuses a charset inside content_type; Prometheus reads text format as UTF-8 anyway.
_PROMETHEUS_CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST.split(";", 2)[0] + "; version=0.0.4"
TABLE_NAME = "visitors"
LAG_INTERVAL_SECONDS = 5.0
PRODUCER_LINGER_SECONDS = 0.01
REDIS_CHECK_SECONDS = 5.0
REWIND_CHECK_SECONDS = 1.0


def broker_urls(bootstrap: str) -> list[str]:
    """Faust wants ``kafka://host:port`` URLs, one per bootstrap server."""
    return [f"kafka://{server.strip()}" for server in bootstrap.split(",")]


def control_topic_name(settings: Settings) -> str:
    return f"{settings.worker_app_id}-visitor-control"


def samples_topic_name(settings: Settings) -> str:
    return f"{settings.worker_app_id}-segment-samples"


def rewards_topic_name(settings: Settings) -> str:
    return f"{settings.worker_app_id}-rewards"


def create_app(settings: Settings) -> faust.App:
    session_timeout = settings.worker_session_timeout_seconds
    app = faust.App(
        settings.worker_app_id,
        broker=broker_urls(settings.kafka_bootstrap),
        store=settings.worker_store,
        # Not Faust's default (a folder in the current directory).
        datadir=str(settings.worker_data_dir / "{conf.name}"),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        # A new consumer group starts from the oldest retained event: nothing accepted is skipped.
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.worker_commit_interval_seconds,
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(0.5, session_timeout / 5),
        # Faust's producer carries sessions, rewards, samples and control records (the table's
        # changes go through tracker.streams.changelog): let them share produce requests.
        producer_linger=PRODUCER_LINGER_SECONDS,
        web_enabled=settings.worker_web_port > 0,
        web_bind=settings.worker_web_host,
        web_port=settings.worker_web_port or 6066,
        web_in_thread=False,
    )
    visitor_intake = intake.BatchIntake(
        (settings.topic_events, settings.topic_decisions, control_topic_name(settings)),
        batch_max=settings.worker_batch_max,
        batch_wait_seconds=settings.worker_batch_wait_seconds,
    )
    intake.install(app, visitor_intake, fetch_wait_seconds=settings.worker_fetch_wait_seconds)
    partitions = settings.topic_partitions
    # events (external, created by `tracker topics`) and the control topic (internal: Faust
    # creates it) feed one agent, so a visitor's changes are applied one at a time, in order.
    visitor_input = app.topic(
        settings.topic_events,
        settings.topic_decisions,
        control_topic_name(settings),
        internal=True,
        partitions=partitions,
        key_serializer="raw",
        value_serializer="raw",
    )
    control_topic = app.topic(
        control_topic_name(settings),
        internal=True,
        partitions=partitions,
        key_serializer="raw",
        value_serializer="raw",
    )
    erasures_topic = app.topic(settings.topic_erasures, key_serializer="raw", value_serializer="raw")
    sessions_topic = app.topic(settings.topic_sessions, key_serializer="raw", value_serializer="raw")
    samples_topic = app.topic(
        samples_topic_name(settings),
        internal=True,
        partitions=1,
        key_serializer="raw",
        value_serializer="raw",
    )
    rewards_topic = app.topic(
        rewards_topic_name(settings),
        internal=True,
        partitions=1,
        key_serializer="raw",
        value_serializer="raw",
    )
    value_codec = codec.register()
    # The changelog topic Faust would make, but reading values back with our codec (Faust
    # derives a table's codec from a model type; the state is a dataclass with its own).
    changelog = app.topic(
        f"{settings.worker_app_id}-{TABLE_NAME}-changelog",
        key_serializer="raw",
        value_serializer=value_codec,
        partitions=partitions,
        compacting=True,
        acks=False,
        internal=True,
        maxsize=131_072,
        allow_empty=True,
    )
    table = app.Table(
        TABLE_NAME,
        partitions=partitions,
        key_type=bytes,
        changelog_topic=changelog,
        help="Per-visitor state: profile, open session, recent event ids, erasure tombstone.",
    )
    table.value_serializer = value_codec  # what Faust would write table changes with
    changelog_writer = ChangelogWriter(app, settings, changelog.get_topic_name(), table)

    @app.on_before_shutdown.connect
    async def flush_changelog(sender: faust.App, **kwargs: object) -> None:
        """After the last batch was acknowledged (Faust waits for that before this signal)."""
        await changelog_writer.stop()

    processor = VisitorProcessor(
        app,
        settings,
        table=table,
        sessions_topic=sessions_topic,
        control_topic=control_topic,
        samples_topic=samples_topic if settings.segments_enabled else None,
        rewards_topic=rewards_topic,
        changelog=changelog_writer,
    )
    app.visitor_processor = processor  # type: ignore[attr-defined]  # for tests and benchmarks
    read_offsets.install(app.consumer, processor.rewinds.target)

    @app.agent(visitor_input, name="visitors")
    async def visitors(stream: faust.StreamT) -> None:
        """Fold batches of events (and control records) into visitor states and profiles.

        The agent subscribes its topics (and co-partitions the table with them), but their
        records come from the batch intake, not from ``stream`` (see tracker.streams.intake)."""
        async for batch in visitor_intake.batches():
            await processor.process(batch)

    @app.agent(erasures_topic, name="erasures")
    async def erasures(stream: faust.StreamT) -> None:
        """Re-key erasure requests onto the control topic, on the visitor's events partition."""
        async for raw in stream:
            try:
                request = ErasureRequest.model_validate_json(raw)
            except pydantic.ValidationError as exc:
                log.error("unreadable erasure request skipped: %s", exc)
                metrics.ERASURES.labels(outcome="invalid").inc()
                continue
            key = partition_key(request.site_id, request.visitor_id)
            count = app.consumer.topic_partitions(settings.topic_events) or partitions
            future = await control_topic.send(
                key=key,
                value=Control("erase", erasure=request).to_bytes(),
                partition=key_partition(key, count),
            )
            await future  # acknowledged by Kafka before this request is acknowledged

    def owns(topic: str) -> bool:
        """Whether this worker is assigned ``topic`` (the one-partition topics of single writers)."""
        return any(tp.topic == topic for tp in app.consumer.assignment())

    trainer_redis = background_client(settings.redis_url)
    trainer_host = TrainerHost(settings, trainer_redis)

    @app.agent(rewards_topic, name="trainer")
    async def trainer(stream: faust.StreamT) -> None:
        """The one click-model writer: whoever owns the single rewards partition."""
        async for rewards in stream.noack_take(1000, 1.0):
            try:
                await trainer_host.learn(stream, list(rewards))
            except RedisError as exc:
                log.warning("click model publication failed (%r); will retry", exc)

    @app.timer(interval=1.0)
    async def publish_click_model() -> None:
        if not owns(rewards_topic_name(settings)):
            trainer_host.forget()
            return
        try:
            await trainer_host.tick()
        except RedisError as exc:
            log.warning("click model publication failed (%r); will retry", exc)

    if settings.segments_enabled:
        learner_redis = background_client(settings.redis_url)
        host = LearnerHost(settings, learner_redis)

        @app.agent(samples_topic, name="segments")
        async def segments(stream: faust.StreamT) -> None:
            """The one segment learner: whoever owns the single samples partition."""
            async for samples in stream.take(1000, within=1.0):
                try:
                    await host.learn(list(samples))
                except RedisError as exc:
                    log.warning("segment model publication failed (%r); will retry", exc)

        @app.timer(interval=settings.segment_publish_seconds)
        async def publish_segments() -> None:
            """Publish from the worker that owns the samples partition, and only from it."""
            if not owns(samples_topic_name(settings)):
                host.forget()
                return
            try:
                await host.publish()
            except RedisError as exc:
                log.warning("segment model publication failed (%r); will retry", exc)

        @app.timer(interval=settings.segment_refresh_seconds)
        async def refresh_segments() -> None:
            try:
                snapshot = await load_snapshot(processor.redis, settings.worker_app_id)
            except (RedisError, ValueError) as exc:
                log.warning("cannot read the segment model (%r); keeping the current one", exc)
                return
            if snapshot is not None:
                processor.segment_snapshot = snapshot
                metrics.SEGMENT_MODEL_VERSION.set(snapshot["version"])

    @app.timer(interval=REWIND_CHECK_SECONDS)
    async def retry_rewinds() -> None:
        """Seek again the partitions whose missing records have not come, and seek back those
        stuck short of their high watermark (idle partitions send no batch that would notice)."""
        await processor.retry_rewinds()
        await processor.check_stalls()

    @app.timer(interval=settings.session_sweep_seconds)
    async def sweep() -> None:
        await processor.sweep()

    @app.timer(interval=LAG_INTERVAL_SECONDS)
    async def consumer_lag() -> None:
        committed = app.monitor.tp_committed_offsets
        for tp in app.consumer.assignment():
            try:
                highwater = app.consumer.highwater(tp)
            except Exception:  # not fetched yet: no highwater known
                continue
            if highwater is None:
                continue
            position = committed.get(tp)
            lag = highwater - position if position is not None else highwater
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, lag))

    redis_run: dict[str, str] = {}

    async def check_redis_run() -> None:
        """Redis restarted empty (new run id): write the profiles the table holds again."""
        try:
            run_id = (await processor.redis.info("server"))["run_id"]
        except (RedisError, OSError, KeyError) as exc:
            log.debug("Redis not answering INFO: %r", exc)
            return
        previous = redis_run.get("run_id")
        redis_run["run_id"] = run_id
        if previous is not None and previous != run_id:
            written = await processor.resync_redis()
            log.warning("Redis restarted (run id changed): rewrote %d profiles", written)

    @app.task
    async def note_redis_run_at_start() -> None:
        """The run id the worker starts with: the timer's first check comes REDIS_CHECK_SECONDS
        later, after the first profiles are written, and a restart before it would go unseen."""
        await check_redis_run()

    @app.timer(interval=REDIS_CHECK_SECONDS)
    async def resync_after_redis_restart() -> None:
        await check_redis_run()

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(prometheus_client.generate_latest(), content_type=_PROMETHEUS_CONTENT_TYPE)

    @app.page("/healthz")
    class Health(View):
        """Liveness (and Kubernetes readiness: a worker takes no traffic, it only consumes)."""

        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    return app


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    """Run one worker until SIGINT/SIGTERM; start more to share the partitions."""
    from faust.worker import Worker

    from tracker.streams.topics import prepare_topics

    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    app = create_app(prepare_topics(settings))
    # The table's states are long-lived and numerous: with CPython's default thresholds full
    # collections rescanning them took ~13 % of the worker's time in bench/streams_throughput.py.
    settle_heap()
    Worker(app, loglevel=loglevel).execute_from_commandline()
