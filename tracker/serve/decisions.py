"""The decision log: every offer shown goes to the ``decisions`` topic, best effort.

A response must never wait for Kafka or fail because of it, so the request
path only puts the record in a bounded in-memory queue (``log`` never awaits).
One background task connects the producer (retrying with backoff while Kafka
is down) and drains the queue. When the queue is full, or Kafka refuses a
record, the record is dropped and counted in
``tracker_offer_decisions_dropped_total``: losing a few decisions costs a
little learning signal, blocking the API would cost the page.

Records are keyed by ``site:visitor`` like events, so a visitor's decisions
land on one partition and can be joined with their clicks in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tracker.schema import partition_key
from tracker.serve.metrics import OfferMetrics
from tracker.settings import Settings

log = logging.getLogger(__name__)

DECISION_SCHEMA_VERSION = 1
_START_GRACE_SECONDS = 2.0


class DecisionLog:
    """Fire-and-forget writer of decision records to Kafka."""

    def __init__(
        self,
        settings: Settings,
        metrics: OfferMetrics,
        *,
        max_queued: int = 10_000,
        max_retry_seconds: float = 30.0,
        stop_timeout_seconds: float = 5.0,
    ) -> None:
        self.max_queued = max_queued
        self.max_retry_seconds = max_retry_seconds
        self.stop_timeout_seconds = stop_timeout_seconds
        self._settings = settings
        self._metrics = metrics
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=max_queued)
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """Whether the producer has reached Kafka (it may have lost it since)."""
        return self._producer is not None

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def log(self, record: dict[str, Any]) -> None:
        """Queue one decision record; never blocks, never raises."""
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self._metrics.decisions_dropped.labels(reason="queue_full").inc()

    async def start(self) -> None:
        """Start the background task; returns at once, even if Kafka is unreachable."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="decision-log")

    async def stop(self) -> None:
        """Hand over what is queued, flush, and close, within ``stop_timeout_seconds``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                async with asyncio.timeout(self.stop_timeout_seconds):
                    while not self._queue.empty():
                        await self._send(producer, self._queue.get_nowait())
                    await producer.stop()  # flushes what the producer still holds
            except TimeoutError:
                log.warning(
                    "decision log: Kafka did not take the last records in %ss", self.stop_timeout_seconds
                )
        unsent = self._queue.qsize()
        if unsent:
            self._metrics.decisions_dropped.labels(reason="shutdown").inc(unsent)
            while not self._queue.empty():
                self._queue.get_nowait()

    async def _run(self) -> None:
        try:
            producer = await self._connect()
        except Exception:
            # E.g. a malformed bootstrap address: serving goes on, every decision counts as dropped.
            log.exception("decision log: cannot create the Kafka producer; decisions will not be logged")
            return
        self._producer = producer
        while True:
            record = await self._queue.get()
            try:
                await self._send(producer, record)
            except Exception:
                # A bug here must not kill the drain task: every later decision would be lost silently.
                log.exception("decision log: unexpected error while sending a record")
                self._metrics.decisions_dropped.labels(reason="kafka_error").inc()

    async def _connect(self) -> AIOKafkaProducer:
        delay = 0.5
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._settings.kafka_bootstrap,
                acks="all",
                linger_ms=5,  # batch a few decisions per request to the broker
                request_timeout_ms=10_000,
                client_id="tracker-offer-api",
            )
            starting = asyncio.ensure_future(producer.start())
            try:
                await asyncio.shield(starting)
            except asyncio.CancelledError:
                # Cancelling aiokafka mid-bootstrap leaks its socket: let the attempt end, then close.
                await asyncio.wait({starting}, timeout=_START_GRACE_SECONDS)
                starting.cancel()
                starting.add_done_callback(_consume_outcome)
                await _quietly_stop(producer)
                raise
            except KafkaError as exc:
                log.warning("decision log: Kafka not reachable (%s); retrying in %.1fs", exc, delay)
                await _quietly_stop(producer)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_seconds)
                continue
            except Exception:
                await _quietly_stop(producer)
                raise
            log.info("decision log: connected to Kafka at %s", self._settings.kafka_bootstrap)
            return producer

    async def _send(self, producer: AIOKafkaProducer, record: dict[str, Any]) -> None:
        try:
            delivery = await producer.send(
                self._settings.topic_decisions,
                value=orjson.dumps(record),
                key=partition_key(record["site_id"], record["visitor_id"]),
            )
        except KafkaError as exc:
            log.debug("decision log: record refused: %s", exc)
            self._metrics.decisions_dropped.labels(reason="kafka_error").inc()
            return
        delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            self._metrics.decisions_dropped.labels(reason="kafka_error").inc()
        else:
            self._metrics.decisions_sent.inc()


async def _quietly_stop(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await producer.stop()


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    # Mark an abandoned attempt's exception as seen, so asyncio does not log it as lost.
    if not future.cancelled():
        future.exception()
