"""KafkaBatchProducer's own logic, with a stand-in for librdkafka's producer (no Kafka needed).

The stand-in behaves like the real client where it matters: records are queued by
``produce`` and their delivery reports arrive later, from ``poll`` (which the producer
calls on the event loop).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from tracker.errors import BrokerUnavailableError, DeliveryError, DeliveryTimeoutError
from tracker.kafka_producer import KafkaBatchProducer, Record
from tracker.settings import Settings

SETTINGS = Settings(environment="test", kafka_bootstrap="127.0.0.1:9", produce_timeout_seconds=0.3)
RECORDS = [Record("events", f"k{i}".encode(), b"{}") for i in range(5)]


class StandIn:
    """Queues records; reports them delivered (or failed with ``error``) on the next poll,
    only once ``release`` is set. ``down_for`` metadata requests fail first."""

    def __init__(self, *, down_for: int = 0, error: KafkaError | None = None, full_after: int | None = None):
        self.config: dict[str, Any] = {}
        self.down_for = down_for
        self.error = error
        self.full_after = full_after
        self.release = threading.Event()
        self.release.set()
        self.queued: list[tuple[Record, Any]] = []
        self.produced: list[Record] = []
        self.lock = threading.Lock()
        self.flushed = False

    def __call__(self, config: dict[str, Any]) -> StandIn:
        self.config = config
        return self

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any) -> None:
        if self.full_after is not None and len(self.produced) >= self.full_after:
            raise BufferError("Local: Queue full")
        record = Record(topic, key, value)
        self.produced.append(record)
        with self.lock:
            self.queued.append((record, on_delivery))

    def poll(self, timeout: float) -> int:
        if not self.release.wait(timeout):
            return 0
        with self.lock:
            ready, self.queued = self.queued, []
        for _, callback in ready:
            callback(self.error, None)
        if not ready:
            threading.Event().wait(timeout)
        return len(ready)

    def __len__(self) -> int:
        with self.lock:
            return len(self.queued)

    def flush(self, timeout: float) -> int:
        self.flushed = True
        return self.poll(0) and 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        if self.down_for:
            self.down_for -= 1
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))
        return object()


def producer_with(stand_in: StandIn) -> KafkaBatchProducer:
    return KafkaBatchProducer(
        SETTINGS, reconnect_initial_seconds=0.01, reconnect_max_seconds=0.02, client_factory=stand_in
    )


async def test_configuration_is_acks_all_and_idempotent() -> None:
    stand_in = StandIn()
    producer = producer_with(stand_in)
    await producer.start()
    await producer.stop()
    assert stand_in.config["acks"] == "all"
    assert stand_in.config["enable.idempotence"] is True
    assert stand_in.config["bootstrap.servers"] == SETTINGS.kafka_bootstrap
    assert stand_in.flushed


async def test_returns_once_every_record_is_acknowledged() -> None:
    stand_in = StandIn()
    producer = producer_with(stand_in)
    await producer.start()
    try:
        await producer.send_batch(RECORDS)
        assert stand_in.produced == RECORDS
        assert producer.ready
    finally:
        await producer.stop()


async def test_missing_acknowledgement_is_a_delivery_timeout() -> None:
    stand_in = StandIn()
    producer = producer_with(stand_in)
    await producer.start()
    try:
        await producer.send_batch(RECORDS[:1])  # connected
        stand_in.release.clear()  # reports stop arriving
        with pytest.raises(DeliveryTimeoutError, match="did not acknowledge 5 record"):
            await producer.send_batch(RECORDS)
    finally:
        stand_in.release.set()
        await producer.stop()


async def test_refused_write_is_a_delivery_error() -> None:
    stand_in = StandIn(error=KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large"))
    producer = producer_with(stand_in)
    await producer.start()
    try:
        with pytest.raises(DeliveryError, match="Message size too large"):
            await producer.send_batch(RECORDS)
    finally:
        await producer.stop()


async def test_full_local_queue_is_a_delivery_error() -> None:
    stand_in = StandIn(full_after=2)
    producer = producer_with(stand_in)
    await producer.start()
    try:
        with pytest.raises(DeliveryError, match="local queue is full"):
            await producer.send_batch(RECORDS)
    finally:
        await producer.stop()


async def test_start_returns_at_once_and_connects_in_the_background() -> None:
    stand_in = StandIn(down_for=3)
    producer = producer_with(stand_in)
    await producer.start()
    try:
        assert not producer.ready
        await producer.send_batch(RECORDS)  # waits for the connection, within the timeout
        assert stand_in.down_for == 0
        assert producer.ready and await producer.check()
    finally:
        await producer.stop()


async def test_never_connected_is_broker_unavailable() -> None:
    stand_in = StandIn(down_for=10_000)
    producer = producer_with(stand_in)
    await producer.start()
    try:
        with pytest.raises(BrokerUnavailableError, match=r"Not connected to Kafka at 127\.0\.0\.1:9"):
            await producer.send_batch(RECORDS)
        assert stand_in.produced == []
        assert not await producer.check()
    finally:
        await producer.stop()


async def test_send_before_start_is_broker_unavailable() -> None:
    with pytest.raises(BrokerUnavailableError, match="not started"):
        await producer_with(StandIn()).send_batch(RECORDS)


async def test_all_brokers_down_clears_readiness_until_a_write_succeeds() -> None:
    stand_in = StandIn()
    producer = producer_with(stand_in)
    await producer.start()
    try:
        await producer.send_batch(RECORDS[:1])
        producer._on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        assert not producer.ready
        await producer.send_batch(RECORDS[:1])
        assert producer.ready
    finally:
        await producer.stop()


async def test_stop_is_safe_without_start_and_twice() -> None:
    producer = producer_with(StandIn())
    await producer.stop()
    await producer.start()
    await producer.stop()
    await producer.stop()


class CountingStandIn(StandIn):
    """Counts the producer's polls."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = 0

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return super().poll(timeout)


async def polls_while_records_wait(linger_seconds: float, seconds: float = 0.3) -> int:
    stand_in = CountingStandIn()
    producer = KafkaBatchProducer(SETTINGS, client_factory=stand_in, linger_seconds=linger_seconds)
    await producer.start()
    try:
        await producer.wait_connected()
        stand_in.release.clear()  # the record waits for its acknowledgement all along
        producer.send_nowait(RECORDS[0], lambda error: None)
        before = stand_in.polls
        await asyncio.sleep(seconds)
        return stand_in.polls - before
    finally:
        stand_in.release.set()
        await producer.stop()


async def test_a_producer_that_lingers_longer_polls_for_acknowledgements_less_often() -> None:
    """Nothing is acknowledged before its linger is over: a 20 ms linger (the offer API's) polls
    four times per linger, every 5 ms, where a 2 ms one (the collector's) polls every 1 ms."""
    lingering = await polls_while_records_wait(0.02)
    prompt = await polls_while_records_wait(0.002)
    assert lingering <= 0.3 / 0.005 + 5  # at most one every 5 ms
    assert prompt > 2 * lingering
