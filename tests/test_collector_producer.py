"""KafkaBatchProducer's own logic, with a stand-in for AIOKafkaProducer (no Kafka needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from tracker.collect.producer import KafkaBatchProducer
from tracker.collect.validate import Record
from tracker.errors import BrokerUnavailableError, DeliveryError, DeliveryTimeoutError
from tracker.settings import Settings

SETTINGS = Settings(environment="test", kafka_bootstrap="127.0.0.1:9", produce_timeout_seconds=0.3)
RECORDS = [Record("events", f"k{i}".encode(), b"{}") for i in range(5)]


class StandIn:
    """Acknowledges nothing until every record of the batch has been handed over, so a
    producer that waited for each acknowledgement before sending the next would stall."""

    def __init__(self, batch_size: int, *, fail_starts: int = 0, error: Exception | None = None) -> None:
        self.batch_size = batch_size
        self.fail_starts = fail_starts
        self.error = error
        self.pending: list[asyncio.Future[Any]] = []
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.stopped = False

    async def start(self) -> None:
        if self.fail_starts:
            self.fail_starts -= 1
            raise KafkaConnectionError("Unable to bootstrap")

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes, key: bytes | None) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        if len(self.pending) == self.batch_size:
            for waiting in self.pending:
                if self.error is not None:
                    waiting.set_exception(self.error)
                else:
                    waiting.set_result(None)
            self.pending = []
        return future


def producer_with(*stand_ins: StandIn) -> KafkaBatchProducer:
    queue = list(stand_ins)
    return KafkaBatchProducer(
        SETTINGS,
        reconnect_initial_seconds=0.01,
        reconnect_max_seconds=0.02,
        # One stand-in per connection attempt; the last one serves every later attempt.
        producer_factory=lambda: queue.pop(0) if len(queue) > 1 else queue[0],  # type: ignore[return-value]
    )


async def test_sends_every_record_before_awaiting_acknowledgements() -> None:
    stand_in = StandIn(batch_size=len(RECORDS))
    producer = producer_with(stand_in)
    await producer.start()
    await producer.send_batch(RECORDS)
    assert [(t, k, v) for t, k, v in stand_in.sent] == [tuple(r) for r in RECORDS]
    await producer.stop()
    assert stand_in.stopped


async def test_missing_acknowledgement_is_a_delivery_timeout() -> None:
    producer = producer_with(StandIn(batch_size=len(RECORDS) + 1))  # the last ack never comes
    await producer.start()
    with pytest.raises(DeliveryTimeoutError, match=r"5 record\(s\) within 0.3 s"):
        await producer.send_batch(RECORDS)
    await producer.stop()


async def test_refused_write_is_a_delivery_error() -> None:
    producer = producer_with(StandIn(batch_size=len(RECORDS), error=MessageSizeTooLargeError()))
    await producer.start()
    with pytest.raises(DeliveryError, match="refused"):
        await producer.send_batch(RECORDS)
    await producer.stop()


async def test_start_returns_at_once_and_reconnects_in_the_background() -> None:
    failing, working = StandIn(len(RECORDS), fail_starts=1), StandIn(len(RECORDS))
    failing_twice = StandIn(len(RECORDS), fail_starts=1)
    producer = producer_with(failing, failing_twice, working)
    await producer.start()  # does not raise although the first attempts fail
    await producer.send_batch(RECORDS)  # waits for the connection, within the timeout
    assert producer.ready
    assert failing.stopped and failing_twice.stopped  # failed attempts are closed
    assert len(working.sent) == len(RECORDS)
    await producer.stop()


async def test_never_connected_is_broker_unavailable() -> None:
    producer = producer_with(StandIn(len(RECORDS), fail_starts=10**6))
    await producer.start()
    with pytest.raises(BrokerUnavailableError, match=r"127\.0\.0\.1:9"):
        await producer.send_batch(RECORDS)
    assert not producer.ready
    assert not await producer.check()
    await producer.stop()


async def test_send_before_start_is_broker_unavailable() -> None:
    with pytest.raises(BrokerUnavailableError, match="start"):
        await producer_with(StandIn(1)).send_batch(RECORDS)
