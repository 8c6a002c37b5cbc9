"""Erasure requests: one record on the ``erasures`` topic, acknowledged by Kafka before we answer.

The stream worker consumes the topic and removes the visitor's profile and
per-visitor state (see ``docs/ARCHITECTURE.md``). Records are keyed by
``site:visitor`` like events, so an erasure lands on the same partition number
as the visitor's events. ``request_id`` is the idempotency key: a client that
got a 503 retries with the same id, and a record written twice is handled once.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka.errors import KafkaError

from tracker.errors import BrokerUnavailableError, DeliveryError, DeliveryTimeoutError
from tracker.schema import ErasureRequest, partition_key
from tracker.serve.kafka import ProducerLink
from tracker.settings import Settings


async def request_erasure(
    link: ProducerLink, settings: Settings, *, site_id: str, visitor_id: str, request_id: str
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
    producer = link.producer
    if producer is None:
        raise BrokerUnavailableError(
            f"Kafka at {settings.kafka_bootstrap} is not reachable by the offer API yet; retry later"
        )
    try:
        async with asyncio.timeout(settings.produce_timeout_seconds):
            delivery = await producer.send(
                settings.topic_erasures,
                value=record.model_dump_json().encode(),
                key=partition_key(site_id, visitor_id),
            )
            await delivery
    except TimeoutError:
        raise DeliveryTimeoutError(
            f"Kafka did not acknowledge the erasure within {settings.produce_timeout_seconds}s; "
            "retry with the same request_id"
        ) from None
    except KafkaError as exc:
        raise DeliveryError(
            f"Kafka refused the erasure record ({exc}); retry with the same request_id"
        ) from exc
    return record
