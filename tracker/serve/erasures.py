"""Erasure requests: one record on the ``erasures`` topic, acknowledged by Kafka before we answer.

The stream worker consumes the topic and removes the visitor's profile and
per-visitor state (see ``docs/ARCHITECTURE.md``). Records are keyed by
``site:visitor`` like events, so an erasure lands on the same partition number
as the visitor's events. ``request_id`` is the idempotency key: a client that
got a 503 retries with the same id, and a record written twice is handled once.
"""

from __future__ import annotations

import time

from tracker.errors import DeliveryError
from tracker.kafka_producer import KafkaBatchProducer, Record
from tracker.schema import ErasureRequest, partition_key
from tracker.settings import Settings


async def request_erasure(
    producer: KafkaBatchProducer, settings: Settings, *, site_id: str, visitor_id: str, request_id: str
) -> ErasureRequest:
    """Write the erasure record and wait for Kafka's acknowledgement (``acks=all``).

    Raises :class:`~tracker.errors.DeliveryError` (a subclass says which) when
    Kafka does not acknowledge within ``TRACKER_PRODUCE_TIMEOUT_SECONDS``.
    """
    record = ErasureRequest(
        site_id=site_id,
        visitor_id=visitor_id,
        request_id=request_id,
        requested_at=time.time_ns() // 1_000_000,
    )
    try:
        await producer.send_batch(
            [
                Record(
                    settings.topic_erasures,
                    partition_key(site_id, visitor_id),
                    record.model_dump_json().encode(),
                )
            ]
        )
    except DeliveryError as exc:  # the subclass says which: unavailable, timeout, refused
        raise type(exc)(f"{str(exc).rstrip('.')}; retry with the same request_id") from exc
    return record
