"""Writes to Kafka from the collector and the offer API, with confluent-kafka (librdkafka).

Why librdkafka and not aiokafka here: both services pay per record on their request path,
and aiokafka's pure-Python ``send`` costs ~40 us of CPU per message against ~4 us for
librdkafka (measured on this project's 2-core machine, docs/BENCHMARKS.md). The asyncio bridge is
small: records are handed to librdkafka's queue, and a task on the event loop polls for
delivery reports, every millisecond while records wait for them (four times per linger when
that is longer); the last report of a batch resolves its asyncio future. (A poller thread did
this before: each delivery callback then had to win the GIL from the busy event loop, which
added milliseconds per batch under load, and woke the loop through its self-pipe once per
batch.)

Both services must start, and answer, while Kafka is down: :meth:`KafkaBatchProducer.start`
only launches a background task that fetches metadata until the cluster answers. Every
write uses ``acks=all`` with the idempotent producer. :meth:`~KafkaBatchProducer.send_batch`
returns only once Kafka has acknowledged every record, or raises a
:class:`~tracker.errors.DeliveryError` (the collector's events, the API's erasure requests);
:meth:`~KafkaBatchProducer.send_nowait` queues one record and reports its outcome to a
callback (the API's decision log, which never makes a response wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from tracker.errors import BrokerUnavailableError, DeliveryError, DeliveryTimeoutError
from tracker.settings import Settings

log = logging.getLogger(__name__)

# Delivery reports are polled at least this often while records wait for them: the event loop's
# timer resolution (uvloop's is a millisecond; a shorter wait would spin). A producer that
# lingers longer polls four times per linger (no record is acknowledged before its linger is
# over): the offer API's 20 ms linger, with records always waiting at 1,000 offers/s, would
# otherwise wake its event loop a thousand times a second for nothing.
POLL_BUSY_SECONDS = 0.001
POLLS_PER_LINGER = 4
# ...and this often when nothing waits (error callbacks: "all brokers down" for /readyz).
POLL_IDLE_SECONDS = 0.05


class Record(NamedTuple):
    """One Kafka write: topic, key (``None`` spreads over partitions) and value."""

    topic: str
    key: bytes | None
    value: bytes


class ProducerClient(Protocol):
    """The part of :class:`confluent_kafka.Producer` used here (tests pass a stand-in)."""

    def produce(
        self, topic: str, value: bytes, key: bytes | None, on_delivery: Callable[..., None]
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...

    def __len__(self) -> int: ...

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...


class BatchProducer(Protocol):
    """What the collector needs from a producer; tests may pass their own."""

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check(self) -> bool: ...

    async def send_batch(self, records: Sequence[Record]) -> None: ...


class _Pending:
    """One batch's outstanding acknowledgements. Delivery reports arrive from ``poll`` on
    the event loop; the last one resolves the future (with the first refusal, or None)."""

    __slots__ = ("error", "future", "remaining")

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self.remaining = count
        self.error: KafkaError | None = None
        self.future: asyncio.Future[Any] = loop.create_future()

    def delivered(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():  # the request may have given up already
            self._resolve()

    def _resolve(self) -> None:
        self.future.set_result(self.error)


class _PendingOffsets(_Pending):
    """As :class:`_Pending`, also keeping the highest acknowledged offset per partition: the
    future resolves to them, or fails with :class:`DeliveryError` on the first refusal."""

    __slots__ = ("offsets",)

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(count, loop)
        self.offsets: dict[int, int] = {}

    def delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            partition, offset = message.partition(), message.offset()
            if offset > self.offsets.get(partition, -1):
                self.offsets[partition] = offset
        super().delivered(error, message)

    def _resolve(self) -> None:
        if self.error is not None:
            self.future.set_exception(DeliveryError(f"Kafka refused the write: {self.error.str()}"))
        else:
            self.future.set_result(self.offsets)


@contextlib.contextmanager
def _refusals(*, queue_full: str = "The Kafka producer's local queue is full") -> Iterator[None]:
    """librdkafka's immediate refusals of ``produce``, as :class:`DeliveryError`."""
    try:
        yield
    except BufferError:
        raise DeliveryError(queue_full) from None
    except KafkaException as exc:
        raise DeliveryError(f"Kafka refused the write: {exc.args[0]}") from None


class KafkaBatchProducer:
    """Acknowledged (``acks=all``, idempotent) batch writes with a deadline.

    ``reconnect_initial_seconds`` / ``reconnect_max_seconds`` bound the backoff between
    metadata requests while the cluster is unreachable. ``client_factory`` builds the
    librdkafka producer from its configuration (tests pass a stand-in).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str = "tracker-collector",
        reconnect_initial_seconds: float = 0.5,
        reconnect_max_seconds: float = 10.0,
        client_factory: Callable[[dict[str, Any]], ProducerClient] | None = None,
        message_timeout_seconds: float | None = None,
        linger_seconds: float = 0.002,
    ) -> None:
        self.settings = settings
        self.linger_seconds = linger_seconds
        self.poll_busy_seconds = max(POLL_BUSY_SECONDS, linger_seconds / POLLS_PER_LINGER)
        # How long librdkafka keeps retrying a record (default: just past the produce timeout).
        self.message_timeout_seconds = (
            settings.produce_timeout_seconds + 1.0
            if message_timeout_seconds is None
            else message_timeout_seconds
        )
        self.client_id = client_id
        self.reconnect_initial_seconds = reconnect_initial_seconds
        self.reconnect_max_seconds = reconnect_max_seconds
        self.client_factory = Producer if client_factory is None else client_factory
        self._client: ProducerClient | None = None
        self._connected: asyncio.Event | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._records_waiting = asyncio.Event()
        self._brokers_down = False

    @property
    def ready(self) -> bool:
        """Connected to the cluster (writes may still fail if it went away since)."""
        return self._connected is not None and self._connected.is_set() and not self._brokers_down

    def client_config(self) -> dict[str, Any]:
        """librdkafka configuration: acks=all, idempotence, and local queues no bigger than
        what the collector lets wait (it answers 503 first, see the in-flight buffer)."""
        s = self.settings
        return {
            "bootstrap.servers": s.kafka_bootstrap,
            "client.id": self.client_id,
            "acks": "all",
            "enable.idempotence": True,
            # The Java client's partitioner (murmur2), as aiokafka and Faust use: a visitor's events,
            # decisions and erasures must land on the same partition number, or ordering breaks.
            "partitioner": "murmur2_random",
            # A short wait lets concurrent requests share a produce request (2 ms by default).
            "linger.ms": self.linger_seconds * 1000,
            # Give up on a record shortly after the request that carried it was answered 503:
            # its sender resends it, so librdkafka need not keep it.
            "message.timeout.ms": int(self.message_timeout_seconds * 1000),
            "queue.buffering.max.kbytes": max(1024, 2 * s.max_inflight_bytes // 1024),
            "queue.buffering.max.messages": max(1000, 2 * s.max_inflight_events),
            "error_cb": self._on_error,
            "logger": log,
        }

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self._connect_task is not None:
            return
        self._client = self.client_factory(self.client_config())
        self._connected = asyncio.Event()
        self._poll_task = asyncio.create_task(self._poll_forever(), name="kafka-delivery-reports")
        self._connect_task = asyncio.create_task(self._connect_forever(), name="kafka-connect")

    async def stop(self) -> None:
        """Stop connecting, flush what is pending (bounded by the produce timeout), close."""
        task, self._connect_task = self._connect_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        poller, self._poll_task = self._poll_task, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        client, self._client = self._client, None
        if client is not None:
            # Delivery reports keep being served on the loop (their futures live here) until
            # everything is acknowledged or the produce timeout passes.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.settings.produce_timeout_seconds
            while len(client) and loop.time() < deadline:
                client.poll(0)
                await asyncio.sleep(POLL_BUSY_SECONDS)
            left = client.flush(0)
            if left:
                log.warning("%d record(s) not acknowledged by Kafka at shutdown", left)

    async def check(self) -> bool:
        """Whether the cluster answers a metadata request now (for ``/readyz``)."""
        client = self._client
        if client is None:
            return False
        try:
            await asyncio.to_thread(client.list_topics, None, self.settings.produce_timeout_seconds)
        except KafkaException:
            return False
        self._brokers_down = False
        return True

    async def send_batch(self, records: Sequence[Record]) -> None:
        """Write every record and wait until Kafka has acknowledged them all.

        Raises :class:`BrokerUnavailableError` if not connected within the produce timeout,
        :class:`DeliveryTimeoutError` if the acknowledgements do not arrive within it,
        and :class:`DeliveryError` if Kafka refused a write.
        """
        if not records:
            return
        timeout = self.settings.produce_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                client = await self._wait_connected()
                pending = _Pending(len(records), asyncio.get_running_loop())
                try:
                    with _refusals(queue_full="The Kafka producer's local queue is full; retry later"):
                        delivered = pending.delivered
                        for record in records:
                            client.produce(record.topic, record.value, record.key, on_delivery=delivered)
                finally:
                    self._records_waiting.set()  # wake the poller for what was queued
                error = await pending.future
        except TimeoutError:
            if self._connected is None or not self._connected.is_set():
                raise BrokerUnavailableError(
                    f"Not connected to Kafka at {self.settings.kafka_bootstrap} after {timeout:g} s; "
                    "retrying in the background"
                ) from None
            raise DeliveryTimeoutError(
                f"Kafka did not acknowledge {len(records)} record(s) within {timeout:g} s"
            ) from None
        if error is not None:
            raise DeliveryError(f"Kafka refused the write: {error.str()}")
        self._brokers_down = False

    def send_nowait(self, record: Record, on_delivered: Callable[[KafkaError | None], None]) -> None:
        """Queue one record without waiting; ``on_delivered(error)`` is called on the event loop
        once Kafka acknowledged it (``None``) or gave up on it. Raises :class:`DeliveryError` at
        once when the producer is not started or its local queue is full."""
        client = self._client
        if client is None:
            raise DeliveryError("The Kafka producer is not running")
        with _refusals():
            client.produce(
                record.topic, record.value, record.key, on_delivery=lambda error, _: on_delivered(error)
            )
        self._records_waiting.set()

    def send_to_partitions(
        self, topic: str, records: Sequence[tuple[int, bytes, bytes | None]]
    ) -> asyncio.Future[dict[int, int]]:
        """Queue ``(partition, key, value)`` records for ``topic`` (``None``: a tombstone) in
        order; the future resolves to the highest acknowledged offset per partition once Kafka
        acknowledged them all, or fails with :class:`DeliveryError`. No deadline of its own:
        librdkafka retries each record for ``message_timeout_seconds``."""
        loop = asyncio.get_running_loop()
        client = self._client
        if client is None:
            raise DeliveryError("The Kafka producer is not running")
        if not records:
            done: asyncio.Future[dict[int, int]] = loop.create_future()
            done.set_result({})
            return done
        pending = _PendingOffsets(len(records), loop)
        try:
            with _refusals():
                for partition, key, value in records:
                    client.produce(topic, value, key, on_delivery=pending.delivered, partition=partition)  # type: ignore[call-arg]
        finally:
            self._records_waiting.set()
        return pending.future

    async def wait_connected(self) -> None:
        """Return once the cluster first answered (see :meth:`start`)."""
        await self._wait_connected()

    async def _wait_connected(self) -> ProducerClient:
        if self._connected is None or self._client is None:
            raise BrokerUnavailableError("The Kafka producer was not started; call start() first")
        await self._connected.wait()
        return self._client

    async def _poll_forever(self) -> None:
        """Serve delivery reports (and error callbacks) on the loop: every ``poll_busy_seconds``
        while records wait for acknowledgement, else whenever a batch is queued or 50 ms passed."""
        client = self._client
        assert client is not None
        while True:
            try:
                client.poll(0)
            except Exception:
                # A failing delivery callback must not end the reports of every later write.
                log.exception("a Kafka delivery callback failed")
            if len(client):
                await asyncio.sleep(self.poll_busy_seconds)
                continue
            self._records_waiting.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_IDLE_SECONDS):
                    await self._records_waiting.wait()

    def _on_error(self, error: KafkaError) -> None:
        # Called from librdkafka's poll, on the event loop.
        # librdkafka retries by itself and reports every failed attempt: warn once per outage.
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            if not self._brokers_down:
                log.warning("Kafka at %s: %s", self.settings.kafka_bootstrap, error.str())
            self._brokers_down = True
        else:
            log.debug("Kafka client error: %s", error.str())

    async def _connect_forever(self) -> None:
        delay = self.reconnect_initial_seconds
        attempt = 0
        client = self._client
        assert client is not None and self._connected is not None
        while True:
            attempt += 1
            try:
                wait = min(self.settings.produce_timeout_seconds, 5.0)
                await asyncio.to_thread(client.list_topics, None, wait)
            except KafkaException as exc:
                log.warning(
                    "Kafka at %s unreachable (attempt %d): %s; retrying in %.1f s",
                    self.settings.kafka_bootstrap,
                    attempt,
                    exc.args[0] if exc.args else exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_seconds)
                continue
            self._brokers_down = False
            self._connected.set()
            log.info("Connected to Kafka at %s", self.settings.kafka_bootstrap)
            return
