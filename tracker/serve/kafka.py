"""The offer API's one Kafka producer, connected in the background.

Serving never waits for Kafka: the API starts and answers offers while the
producer is still connecting (or while Kafka is down), retrying with capped
exponential backoff. The decision log (fire-and-forget) and erasure requests
(which do wait for Kafka's acknowledgement) share this one producer, so each
API process holds one set of broker connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tracker.settings import Settings

log = logging.getLogger(__name__)

_START_GRACE_SECONDS = 2.0


class ProducerLink:
    """Owns the producer: ``producer`` is None until Kafka first answered."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str = "tracker-offer-api",
        max_retry_seconds: float = 30.0,
        stop_timeout_seconds: float = 5.0,
    ) -> None:
        self.client_id = client_id
        self.max_retry_seconds = max_retry_seconds
        self.stop_timeout_seconds = stop_timeout_seconds
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failed: Exception | None = None  # set when the producer cannot even be created

    @property
    def producer(self) -> AIOKafkaProducer | None:
        return self._producer

    async def wait_connected(self) -> AIOKafkaProducer:
        await self._connected.wait()
        assert self._producer is not None
        return self._producer

    async def start(self) -> None:
        """Start connecting; returns at once, even if Kafka is unreachable."""
        if self._task is None:
            self._task = asyncio.create_task(self._connect_forever(), name="kafka-producer-connect")

    async def stop(self) -> None:
        """Stop connecting, flush what the producer holds and close, within ``stop_timeout_seconds``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        producer, self._producer = self._producer, None
        self._connected.clear()
        if producer is not None:
            try:
                async with asyncio.timeout(self.stop_timeout_seconds):
                    await producer.stop()  # flushes pending batches
            except TimeoutError:
                log.warning(
                    "Kafka did not take the producer's last records in %ss", self.stop_timeout_seconds
                )

    async def _connect_forever(self) -> None:
        delay = 0.5
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._settings.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,  # batch a few decisions per request to the broker
                request_timeout_ms=10_000,
                client_id=self.client_id,
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
                log.warning("Kafka not reachable (%s); retrying in %.1fs", exc, delay)
                await _quietly_stop(producer)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_seconds)
                continue
            except Exception as exc:
                # E.g. a malformed bootstrap address: serving goes on without Kafka, and says so.
                log.exception("cannot create the Kafka producer; decisions and erasures are unavailable")
                self.failed = exc
                await _quietly_stop(producer)
                return
            log.info("connected to Kafka at %s", self._settings.kafka_bootstrap)
            self._producer = producer
            self._connected.set()
            return


async def _quietly_stop(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await producer.stop()


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    # Mark an abandoned attempt's exception as seen, so asyncio does not log it as lost.
    if not future.cancelled():
        future.exception()
