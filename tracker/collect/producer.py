"""A thin wrapper around :class:`aiokafka.AIOKafkaProducer` for acknowledged batch writes.

The collector must start, and answer 503, while Kafka is down: :meth:`KafkaBatchProducer.start`
only launches a background task that connects, retrying with capped backoff. Every
write uses ``acks=all`` with the idempotent producer, and :meth:`~KafkaBatchProducer.send_batch`
returns only once Kafka has acknowledged every record, or raises a
:class:`~tracker.errors.DeliveryError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from tracker.collect.validate import Record
from tracker.errors import BrokerUnavailableError, DeliveryError, DeliveryTimeoutError
from tracker.settings import Settings

log = logging.getLogger(__name__)


class BatchProducer(Protocol):
    """What the collector needs from a producer; tests may pass their own."""

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check(self) -> bool: ...

    async def send_batch(self, records: Sequence[Record]) -> None: ...


class KafkaBatchProducer:
    """Acknowledged (``acks=all``, idempotent) batch writes with a deadline.

    ``reconnect_initial_seconds`` / ``reconnect_max_seconds`` bound the backoff between
    connection attempts while the cluster is unreachable. ``producer_factory`` builds
    each attempt's :class:`AIOKafkaProducer` (tests pass a stand-in).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str = "tracker-collector",
        reconnect_initial_seconds: float = 0.5,
        reconnect_max_seconds: float = 10.0,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.reconnect_initial_seconds = reconnect_initial_seconds
        self.reconnect_max_seconds = reconnect_max_seconds
        self.producer_factory = producer_factory or self._new_producer
        self._producer: AIOKafkaProducer | None = None
        self._connected: asyncio.Event | None = None
        self._connect_task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Connected to the cluster (writes may still fail if it went away since)."""
        return self._producer is not None

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self._connect_task is None:
            self._connected = asyncio.Event()
            self._connect_task = asyncio.create_task(self._connect_forever(), name="kafka-connect")

    async def stop(self) -> None:
        """Stop connecting, flush what is pending (bounded by the produce timeout), close."""
        task, self._connect_task = self._connect_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer, self.settings.produce_timeout_seconds)

    async def check(self) -> bool:
        """Whether the cluster answers a metadata request now (for ``/readyz``)."""
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(self.settings.produce_timeout_seconds):
                return bool(await producer.client.force_metadata_update())
        except (TimeoutError, KafkaError, OSError):
            return False

    async def send_batch(self, records: Sequence[Record]) -> None:
        """Write every record and wait until Kafka has acknowledged them all.

        All records are handed to the producer first and their acknowledgements awaited
        together, so a batch costs one round trip per partition, not one per record.
        Raises :class:`BrokerUnavailableError` if not connected within the produce timeout,
        :class:`DeliveryTimeoutError` if the acknowledgements do not arrive within it,
        and :class:`DeliveryError` if Kafka refused a write.
        """
        if not records:
            return
        timeout = self.settings.produce_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                producer = await self._wait_connected()
                futures = [await producer.send(r.topic, value=r.value, key=r.key) for r in records]
                await asyncio.gather(*futures)
        except (TimeoutError, KafkaTimeoutError):
            if self._producer is None:
                raise BrokerUnavailableError(
                    f"Not connected to Kafka at {self.settings.kafka_bootstrap} after {timeout:g} s; "
                    "retrying in the background"
                ) from None
            raise DeliveryTimeoutError(
                f"Kafka did not acknowledge {len(records)} record(s) within {timeout:g} s"
            ) from None
        except KafkaError as exc:
            raise DeliveryError(f"Kafka refused the write: {exc!r}") from exc

    async def _wait_connected(self) -> AIOKafkaProducer:
        if self._connected is None:
            raise BrokerUnavailableError("The Kafka producer was not started; call start() first")
        await self._connected.wait()
        assert self._producer is not None
        return self._producer

    def _new_producer(self) -> AIOKafkaProducer:
        # A fresh producer per attempt: one whose start() failed is not reusable.
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
        )

    async def _connect_forever(self) -> None:
        delay = self.reconnect_initial_seconds
        attempt = 0
        while True:
            attempt += 1
            producer = self.producer_factory()
            try:
                async with asyncio.timeout(self.settings.produce_timeout_seconds):
                    await producer.start()
            except (KafkaError, OSError, TimeoutError) as exc:
                await _stop_quietly(producer, self.settings.produce_timeout_seconds)
                log.warning(
                    "Kafka at %s unreachable (attempt %d): %r; retrying in %.1f s",
                    self.settings.kafka_bootstrap,
                    attempt,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_seconds)
                continue
            self._producer = producer
            assert self._connected is not None
            self._connected.set()
            log.info("Connected to Kafka at %s", self.settings.kafka_bootstrap)
            return


async def _stop_quietly(producer: AIOKafkaProducer, grace_seconds: float) -> None:
    """Close a producer without letting a dead cluster hang or crash shutdown."""
    try:
        async with asyncio.timeout(grace_seconds):
            await producer.stop()
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("Kafka producer did not close cleanly: %r", exc)
