"""The decision log: every offer shown goes to the ``decisions`` topic, best effort.

A response must never wait for Kafka or fail because of it, so the request
path only puts the record in a bounded in-memory queue (:meth:`DecisionLog.log`
never awaits). One background task waits for the shared producer
(:class:`~tracker.serve.kafka.ProducerLink`) and drains the queue. When the
queue is full, or Kafka refuses a record, the record is dropped and counted in
``tracker_offer_decisions_dropped_total{reason}``: losing a few decisions costs
a little learning signal, blocking the API would cost the page. The queue depth
is ``tracker_offer_decision_queue_depth``.

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
from tracker.serve.kafka import ProducerLink
from tracker.serve.metrics import OfferMetrics
from tracker.settings import Settings

log = logging.getLogger(__name__)

# Layout of a decision record (docs/ARCHITECTURE.md, "Kafka topics"). 1: the rule-based ranking's
# record (offer_id, personalised, reason, score, propensity 1). 2: the policy's
# ``Decision.log_record()`` (propensity, model_version, holdout, explored, epsilon, features,
# context, eligible, log_version) plus decision_id, site_id, visitor_id, ts and fallback.
DECISION_SCHEMA_VERSION = 2


class DecisionLog:
    """Fire-and-forget writer of decision records to Kafka."""

    def __init__(
        self,
        link: ProducerLink,
        settings: Settings,
        metrics: OfferMetrics,
        *,
        max_queued: int = 10_000,
        stop_timeout_seconds: float = 5.0,
    ) -> None:
        self.max_queued = max_queued
        self.stop_timeout_seconds = stop_timeout_seconds
        self._link = link
        self._topic = settings.topic_decisions
        self._metrics = metrics
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=max_queued)
        self._task: asyncio.Task[None] | None = None
        metrics.decision_queue_depth.set_function(self._queue.qsize)

    @property
    def connected(self) -> bool:
        """Whether the producer has reached Kafka (it may have lost it since)."""
        return self._link.producer is not None

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
        """Start draining; returns at once, even if Kafka is unreachable."""
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="decision-log")

    async def stop(self) -> None:
        """Hand what is queued to the producer within ``stop_timeout_seconds``; count the rest as dropped.

        Call before the link's own ``stop``, which then flushes the producer.
        """
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        producer = self._link.producer
        if producer is not None:
            try:
                async with asyncio.timeout(self.stop_timeout_seconds):
                    while not self._queue.empty():
                        await self._send(producer, self._queue.get_nowait())
            except TimeoutError:
                log.warning(
                    "decision log: Kafka did not take the last records in %ss", self.stop_timeout_seconds
                )
        unsent = self._queue.qsize()
        if unsent:
            self._metrics.decisions_dropped.labels(reason="shutdown").inc(unsent)
            while not self._queue.empty():
                self._queue.get_nowait()

    async def _drain(self) -> None:
        producer = await self._link.wait_connected()
        while True:
            record = await self._queue.get()
            try:
                await self._send(producer, record)
            except Exception:
                # A bug here must not kill the drain task: every later decision would be lost silently.
                log.exception("decision log: unexpected error while sending a record")
                self._metrics.decisions_dropped.labels(reason="kafka_error").inc()

    async def _send(self, producer: AIOKafkaProducer, record: dict[str, Any]) -> None:
        try:
            delivery = await producer.send(
                self._topic,
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
