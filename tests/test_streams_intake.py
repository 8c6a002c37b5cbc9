"""The worker's batch path around Faust: the intake between the fetch loop and the
``visitors`` agent (pure asyncio), and the changelog writes through librdkafka (real Kafka).

The end-to-end guarantees (SIGKILL and restart with identical profiles, two workers and
rebalances losing nothing) are in test_streams_recovery.py; these pin the pieces.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka import TopicPartition as SyncTopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from tracker.errors import DeliveryError
from tracker.kafka_producer import KafkaBatchProducer
from tracker.settings import Settings
from tracker.streams.intake import BatchIntake


@dataclass
class FakeMessage:  # the two attributes the intake reads of Faust's ConsumerMessage
    offset: int
    generation_id: int = 1


def intake(batch_max: int = 4, wait: float = 0.05) -> BatchIntake:
    box = BatchIntake(["events"], batch_max=batch_max, batch_wait_seconds=wait)
    box.generation = lambda: 1
    return box


async def next_batch(box: BatchIntake) -> list[Any]:
    batches = box.batches()
    try:
        return await asyncio.wait_for(anext(batches), 2.0)
    finally:
        await batches.aclose()


async def test_a_backlog_is_taken_in_full_batches_in_fetch_order() -> None:
    box = intake(batch_max=4, wait=10.0)  # a full batch never waits
    await box.put([FakeMessage(n) for n in range(10)])
    batches = box.batches()
    got = [await asyncio.wait_for(anext(batches), 1.0) for _ in range(2)]
    assert [[m.offset for m in batch] for batch in got] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(box) == 2
    await batches.aclose()


async def test_a_partial_batch_waits_for_more_then_goes() -> None:
    box = intake(batch_max=100, wait=0.05)
    await box.put([FakeMessage(0)])

    async def later() -> None:
        await asyncio.sleep(0.01)
        await box.put([FakeMessage(1), FakeMessage(2)])

    task = asyncio.create_task(later())
    batch = await next_batch(box)
    await task
    assert [m.offset for m in batch] == [0, 1, 2]  # what came within the wait joined the batch


async def test_a_full_intake_holds_the_fetch_loop_back_until_the_worker_takes() -> None:
    box = intake(batch_max=2)  # capacity: 4 batches of 2
    await box.put([FakeMessage(n) for n in range(8)])
    blocked = asyncio.create_task(box.put([FakeMessage(8)]))
    await asyncio.sleep(0.02)
    assert not blocked.done() and len(box) == 8
    assert [m.offset for m in box.take()] == [0, 1]
    await asyncio.wait_for(blocked, 1.0)
    rest: list[int] = []
    while len(box):
        rest.extend(m.offset for m in box.take())
    assert rest == [2, 3, 4, 5, 6, 7, 8]


async def test_records_of_an_earlier_consumer_generation_are_skipped() -> None:
    box = intake(batch_max=10)
    await box.put([FakeMessage(0, generation_id=1), FakeMessage(1, generation_id=2), FakeMessage(2)])
    box.generation = lambda: 2  # a rebalance happened after the fetch
    assert [m.offset for m in box.take()] == [1]


async def test_nothing_is_taken_or_added_while_flow_is_suspended() -> None:
    box = intake(batch_max=10)
    flowing = {"now": True}
    box.flowing = lambda: flowing["now"]
    await box.put([FakeMessage(0), FakeMessage(1)])
    flowing["now"] = False  # Faust suspends flow at the start of a rebalance
    assert box.take() == [] and len(box) == 0
    await box.put([FakeMessage(2)])  # the rest of a fetch made before the rebalance
    assert len(box) == 0
    flowing["now"] = True
    await box.put([FakeMessage(3)])
    assert [m.offset for m in box.take()] == [3]


async def test_clear_drops_waiting_records_and_frees_a_blocked_fetch_loop() -> None:
    box = intake(batch_max=1)
    box_flowing = {"now": True}
    box.flowing = lambda: box_flowing["now"]
    await box.put([FakeMessage(n) for n in range(4)])
    blocked = asyncio.create_task(box.put([FakeMessage(4)]))
    await asyncio.sleep(0.01)
    box_flowing["now"] = False
    box.clear()  # what Faust's flow control does on a rebalance
    await asyncio.wait_for(blocked, 1.0)
    assert len(box) == 0  # the blocked fetch's records were stale: dropped, not queued


async def test_records_dropped_on_a_rebalance_do_not_hold_it_up() -> None:
    """Faust lets a rebalance go on once every tracked record is acknowledged or garbage (a weak
    set). Records the intake drops on it must be garbage even while the fetch loop waits on the
    paused partitions, or the worker never gives its partitions up (as seen in CI)."""
    from faust.types import TP, Message

    from tracker.streams.app import create_app

    settings = Settings(environment="development")
    app = create_app(settings)
    consumer = app.consumer
    intake_ = consumer.intake
    topic = settings.topic_events
    fetch = [Message(topic, 0, offset, 0, 0, {}, b"k", b"v", None, generation_id=0) for offset in range(3)]
    fetches = [fetch]
    del fetch

    async def getmany(**_: Any) -> Any:  # one fetch, then paused partitions: nothing
        if fetches:
            for message in fetches.pop():
                yield TP(topic, 0), message
        else:
            await asyncio.sleep(0.01)

    consumer.getmany = getmany
    app.flow_control.resume()
    fetcher = type("Fetcher", (), {"_stopped": asyncio.Event()})()
    draining = asyncio.create_task(consumer._drain_messages(fetcher))
    try:
        await asyncio.wait_for(intake_._arrived.wait(), 2)
        assert len(intake_) == len(consumer._unacked_messages) == 3
        app.flow_control.suspend()  # a rebalance begins: Faust suspends flow and clears queues
        app.flow_control.clear()
        await asyncio.sleep(0.05)  # the fetch loop is waiting for its next fetch
        gc.collect()
        assert list(consumer._unacked_messages) == []
        assert not draining.done()
    finally:
        fetcher._stopped.set()
        await asyncio.wait_for(draining, 2)


@pytest.fixture
def partitioned_topic(stack: Any) -> str:
    name = f"t-changelog-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, client_id="tracker-tests")
    try:
        admin.create_topics([NewTopic(name, 3, 1)])
    finally:
        admin.close()
    return name


def read_partition(bootstrap: str, topic: str, partition: int) -> list[tuple[int, bytes, bytes | None]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        tp = SyncTopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        records: list[tuple[int, bytes, bytes | None]] = []
        while consumer.position(tp) < end:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend((r.offset, r.key, r.value) for r in batch)
        return records
    finally:
        consumer.close()


async def test_changelog_records_land_on_their_partitions_in_order_with_their_offsets(
    stack: Any, partitioned_topic: str
) -> None:
    producer = KafkaBatchProducer(Settings(environment="test", kafka_bootstrap=stack.kafka_bootstrap))
    await producer.start()
    try:
        await asyncio.wait_for(producer.wait_connected(), 30)
        first = [(0, b"a", b"a1"), (2, b"b", b"b1"), (0, b"a", b"a2"), (1, b"c", None)]
        offsets = await asyncio.wait_for(producer.send_to_partitions(partitioned_topic, first), 30)
        assert offsets == {0: 1, 1: 0, 2: 0}
        offsets = await asyncio.wait_for(
            producer.send_to_partitions(partitioned_topic, [(0, b"a", b"a3")]), 30
        )
        assert offsets == {0: 2}
        assert await producer.send_to_partitions(partitioned_topic, []) == {}
    finally:
        await producer.stop()
    bootstrap = stack.kafka_bootstrap
    assert read_partition(bootstrap, partitioned_topic, 0) == [
        (0, b"a", b"a1"),
        (1, b"a", b"a2"),
        (2, b"a", b"a3"),
    ]
    assert read_partition(bootstrap, partitioned_topic, 1) == [(0, b"c", None)]  # a tombstone
    assert read_partition(bootstrap, partitioned_topic, 2) == [(0, b"b", b"b1")]


async def test_a_refused_changelog_write_fails_its_future(stack: Any, partitioned_topic: str) -> None:
    producer = KafkaBatchProducer(Settings(environment="test", kafka_bootstrap=stack.kafka_bootstrap))
    await producer.start()
    try:
        await asyncio.wait_for(producer.wait_connected(), 30)
        # Partition 7 of a 3-partition topic: librdkafka refuses it, through the future or at once.
        with pytest.raises(DeliveryError, match="refused"):
            await asyncio.wait_for(producer.send_to_partitions(partitioned_topic, [(7, b"k", b"v")]), 30)
    finally:
        await producer.stop()


@pytest.mark.parametrize(
    ("wait", "min_bytes", "max_wait_ms"), [(None, 256 * 1024, 100), (0.01, 256 * 1024, 10), (0.0, 1, 1)]
)
async def test_worker_fetches_wait_to_gather_records(
    wait: float | None, min_bytes: int, max_wait_ms: int
) -> None:
    """Faust asks Kafka for any record at once; the worker's consumer lets a fetch wait up to
    TRACKER_WORKER_FETCH_WAIT_SECONDS (None: the default, 0.1 s) for 256 KiB (0: as Faust does)."""
    from tracker.streams.app import create_app

    chosen = {} if wait is None else {"worker_fetch_wait_seconds": wait}
    app = create_app(Settings(environment="development", **chosen))
    thread = app.consumer._new_consumer_thread()
    consumer = thread._create_worker_consumer(app.transport)  # built, not started: no Kafka needed
    try:
        assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (min_bytes, max_wait_ms)
    finally:
        await consumer.stop()
