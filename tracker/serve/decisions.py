"""The decision log: every offer shown goes to the ``decisions`` topic, best effort.

A response must never wait for Kafka or fail because of it, so the request
path only hands the record to the producer's queue, or while it is not connected
yet puts it in a bounded in-memory queue (:meth:`DecisionLog.log` never awaits).
One background task waits for the API's producer
(:class:`~tracker.kafka_producer.KafkaBatchProducer`, librdkafka: ~4 us of CPU
per record where aiokafka's drain, one awaited ``send`` at a time, fell behind
at 2,000 offers/s) and hands the queued records to it. When the queue is full,
or Kafka refuses or never acknowledges a record, the record is dropped and
counted in ``tracker_offer_decisions_dropped_total{reason}``: losing a few
decisions costs a little learning signal, blocking the API would cost the page.
The queue depth is ``tracker_offer_decision_queue_depth``.

Records are keyed by ``site:visitor`` like events, so a visitor's decisions
land on one partition and can be joined with their clicks in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from confluent_kafka import KafkaError

from tracker.errors import DeliveryError
from tracker.kafka_producer import KafkaBatchProducer, Record
from tracker.schema import partition_key
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
        producer: KafkaBatchProducer,
        settings: Settings,
        metrics: OfferMetrics,
        *,
        max_queued: int = 10_000,
    ) -> None:
        self.max_queued = max_queued
        self._producer = producer
        self._topic = settings.topic_decisions
        self._metrics = metrics
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=max_queued)
        self._task: asyncio.Task[None] | None = None
        # Set once the drain task found the producer connected and handed it the queue (cleared by
        # stop()): from then on log() sends each record itself and nothing is queued any more.
        self._draining = False
        metrics.decision_queue_depth.set_function(self._queue.qsize)

    @property
    def connected(self) -> bool:
        """Whether the producer reaches Kafka."""
        return self._producer.ready

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def log(self, record: dict[str, Any]) -> None:
        """Queue one decision record; never blocks, never raises.

        Once the producer is connected and the queue handed over, the record goes straight to the
        producer's own queue (librdkafka's ``produce`` never blocks either): a hop through a
        task would wake it once per decision, a task step on every offer request."""
        if self._draining:
            self._send(record)
            return
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self._metrics.decisions_dropped.labels(reason="queue_full").inc()

    async def start(self) -> None:
        """Start draining; returns at once, even if Kafka is unreachable."""
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="decision-log")

    async def stop(self) -> None:
        """Hand what is queued to the producer, whose own ``stop`` then waits for the
        acknowledgements; what cannot be handed over is counted as dropped. Call it before
        the producer's ``stop``.
        """
        self._draining = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._producer.ready:
            while not self._queue.empty():
                self._send(self._queue.get_nowait())
        unsent = self._queue.qsize()
        if unsent:
            self._metrics.decisions_dropped.labels(reason="shutdown").inc(unsent)
            while not self._queue.empty():
                self._queue.get_nowait()

    async def _drain(self) -> None:
        await self._producer.wait_connected()
        while not self._queue.empty():  # what came while connecting, before any later record
            self._send(self._queue.get_nowait())
        # No await since the queue was emptied: log() takes over with nothing left behind.
        self._draining = True

    def _send(self, record: dict[str, Any]) -> None:
        try:
            self._producer.send_nowait(
                Record(
                    self._topic,
                    partition_key(record["site_id"], record["visitor_id"]),
                    orjson.dumps(record),
                ),
                self._delivered,
            )
        except DeliveryError as exc:
            log.debug("decision log: record refused: %s", exc)
            self._metrics.decisions_dropped.labels(reason="kafka_error").inc()
        except Exception:
            # A bug here must not escape: log() must never raise, and the drain task must hand over the rest.
            log.exception("decision log: unexpected error while sending a record")
            self._metrics.decisions_dropped.labels(reason="kafka_error").inc()

    def _delivered(self, error: KafkaError | None) -> None:
        if error is None:
            self._metrics.decisions_sent.inc()
        else:
            self._metrics.decisions_dropped.labels(reason="kafka_error").inc()
