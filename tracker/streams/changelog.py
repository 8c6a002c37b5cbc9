"""Write the ``visitors`` table's changes to its changelog with librdkafka, a batch at a time.

Faust writes a table change as one message through its own producer: a ``Topic.send_soon``
per change (a channel message, a codec lookup, a future) handed to aiokafka's pure-Python
``send``. The worker changes one state per event in the worst case, so that path was a
fifth of its CPU. Here a batch's changes (states, tombstones, input positions) are queued
on the product's librdkafka producer (:mod:`tracker.kafka_producer`, idempotent, ``acks=all``)
with their partition, and one future per batch resolves when Kafka acknowledged them all.

What Faust keeps doing: reading the changelog back (recovery, standbys); this module stores
each partition's highest acknowledged offset in the table's store as Faust's own callback does
(the rocksdb store restarts from it). The idempotent producer keeps each partition's records in
order and retries them for :data:`CHANGELOG_MESSAGE_TIMEOUT_SECONDS`; if Kafka still refuses,
the worker crashes rather than go on: a later batch's input position must never be durable
while an earlier batch's states are not (a restart would skip those records as processed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from faust.types import TP

from tracker.kafka_producer import KafkaBatchProducer
from tracker.settings import Settings

log = logging.getLogger(__name__)

# librdkafka's own default: a broker outage up to this long delays the changelog, not loses it.
CHANGELOG_MESSAGE_TIMEOUT_SECONDS = 300.0

# Batches of small batches share produce requests. Nothing waits for the changelog before the
# profile is in Redis, so this costs no freshness (only the records' acknowledgement, and an
# erasure's confirmation, wait for it).
CHANGELOG_LINGER_SECONDS = 0.02

# (partition, key, value or None for a tombstone)
ChangelogRecord = tuple[int, bytes, bytes | None]


class ChangelogWriter:
    def __init__(self, app: Any, settings: Settings, topic: str, table: Any) -> None:
        self.app = app
        self.topic = topic
        self.table = table
        self.producer = KafkaBatchProducer(
            settings,
            client_id=f"{settings.worker_app_id}-changelog",
            message_timeout_seconds=CHANGELOG_MESSAGE_TIMEOUT_SECONDS,
            linger_seconds=CHANGELOG_LINGER_SECONDS,
        )
        self._started = False

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self.producer.start()
        await self.producer.wait_connected()

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self.producer.stop()

    async def write(self, records: Sequence[ChangelogRecord]) -> asyncio.Future[None]:
        """Queue a batch's changes in order; the future resolves once all are durable."""
        await self.start()
        sent = self.producer.send_to_partitions(self.topic, records)
        return asyncio.ensure_future(self._persisted(sent))

    async def _persisted(self, sent: asyncio.Future[dict[int, int]]) -> None:
        try:
            offsets = await sent
        except Exception as exc:
            log.critical("the visitors changelog refused a write (%r): stopping this worker", exc)
            await self.app.crash(exc)
            raise
        store = self.table.data
        for partition, offset in offsets.items():
            store.set_persisted_offset(TP(self.topic, partition), offset)
