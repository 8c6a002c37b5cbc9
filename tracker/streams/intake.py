"""Hand the visitor input topics' records to the worker in fetch-sized batches.

Faust delivers every fetched record on its own: its fetch loop awaits mode's
``wait_first`` per record (four asyncio tasks and an ``asyncio.wait``), then the
conductor takes a lock, builds an ``Event``, puts it on the agent's channel queue,
and the stream iterator takes it off again. Measured on the 2-core machine of
``docs/BENCHMARKS.md``: an agent that only acknowledges tops out at 6,000-9,000
records/s, under the 10,000 events/s one worker must sustain. So the worker keeps
Faust for what it is good at (group membership, the partition assignment that
co-partitions the ``visitors`` table with its inputs, table recovery, standbys,
commits, the other agents and timers) and replaces only the per-record delivery
of its three busiest topics (``events``, ``decisions``, the control topic):

- :class:`BatchConsumer` is Faust's aiokafka consumer with a fetch loop that
  appends those topics' records to a :class:`BatchIntake` a whole fetch at a time
  (tracked as unacknowledged, exactly as Faust's conductor tracks them); records of
  every other topic take Faust's own path, unchanged;
- the ``visitors`` agent takes batches from the intake instead of its stream, and
  acknowledges each record through the consumer once it is durable, so Faust's
  commits, ``wait_empty`` on rebalance and graceful shutdown see the same
  acknowledgements as before.

What Faust's loop does per record is kept: its read-offset rule (a record below the
partition's last delivered offset is a stale fetch after a seek, dropped), gaps in
the offsets of acknowledged topics, and flow control: on a rebalance Faust suspends
flow and clears its queues, and the intake is one of them (its records are not
acknowledged, so the partition's next owner reads them again). As Faust's stream
iterator does, a record fetched before the latest rebalance (another consumer
generation) or taken while flow is suspended is skipped, never processed: its
partition may belong to another worker by now, and a state written from it would
overwrite that worker's newer one in the changelog.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import Message

from tracker.streams import metrics

# Fetched records waiting for the worker, in batches of ``batch_max``: enough to keep it busy
# while the next fetch comes in, little enough that a rebalance drops (and re-reads) little.
INTAKE_BATCHES = 4


class BatchIntake:
    """Records of the batched topics between the fetch loop and the worker, in fetch order.

    The fetch loop waits while the intake is full, which is back-pressure on the fetcher:
    Faust pauses fetching in the same way when an agent's channel is full."""

    def __init__(self, topics: Iterable[str], *, batch_max: int, batch_wait_seconds: float) -> None:
        self.topics = frozenset(topics)
        self.batch_max = batch_max
        self.batch_wait_seconds = batch_wait_seconds
        self.capacity = batch_max * INTAKE_BATCHES
        self._records: deque[Message] = deque()
        # Whether records may be processed now, and which consumer generation is current
        # (set by :func:`install`; the defaults suit a test without Faust).
        self.flowing: Callable[[], bool] = lambda: True
        self.generation: Callable[[], int] = lambda: 0
        self._arrived = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def __len__(self) -> int:
        return len(self._records)

    async def put(self, records: list[Message]) -> None:
        """Add a fetch's records (waits while the intake is full)."""
        while len(self._records) >= self.capacity:
            self._space.clear()
            await self._space.wait()
        if not self.flowing():
            return  # a rebalance began while this fetch waited: its records are stale
        self._records.extend(records)
        self._arrived.set()
        metrics.INTAKE_RECORDS.set(len(self._records))

    def clear(self) -> None:
        """Drop what waits (Faust's flow control calls this on a rebalance)."""
        self._records.clear()
        self._space.set()

    def take(self) -> list[Message]:
        """Up to ``batch_max`` waiting records of the current consumer generation, oldest first
        (none while flow is suspended)."""
        records = self._records
        if not self.flowing():
            self.clear()
        count = min(len(records), self.batch_max)
        batch = [records.popleft() for _ in range(count)]
        generation = self.generation()
        if any(message.generation_id != generation for message in batch):
            batch = [message for message in batch if message.generation_id == generation]
        if len(records) < self.capacity:
            self._space.set()
        if not records:
            self._arrived.clear()
        metrics.INTAKE_RECORDS.set(len(records))
        return batch

    async def batches(self) -> AsyncIterator[list[Message]]:
        """Batches for the worker: each starts with the first record to arrive and takes what
        comes within ``batch_wait_seconds`` after it, up to ``batch_max`` (a backlog is taken
        whole, without waiting)."""
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            deadline = loop.time() + self.batch_wait_seconds
            while len(self._records) < self.batch_max:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = self.take()
            if batch:
                yield batch


# Records a fetch may wait for (Kafka answers when it has this much or the wait is over).
FETCH_MIN_BYTES = 256 * 1024


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with the fetch wait Faust does not expose: its aiokafka consumer
    asks for any record at once (``fetch_min_bytes=1``), so at a few thousand records per second
    every fetch carries a handful of them and a fetch request (encode, syscall, the broker's work,
    decode) costs more than the records it brings."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.consumer, "fetch_wait_seconds", None)
        if wait is not None:
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher (not started yet here).
            consumer._fetch_min_bytes = FETCH_MIN_BYTES if wait > 0 else 1
            consumer._fetch_max_wait_ms = max(1, int(wait * 1000))
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering the intake's topics a fetch at a time."""

    intake: BatchIntake | None = None
    # Longest wait Kafka may take to fill a fetch (None: Faust's own settings).
    fetch_wait_seconds: float | None = None

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - run by the fetcher
        intake = self.intake
        if intake is None:
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await asyncio.sleep(0)  # as Faust does: a getmany that returns at once must yield
                if self.should_stop:
                    break
                await self._drain_fetch(intake)
                await self._commit_every_n_acks()
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _drain_fetch(self, intake: BatchIntake) -> None:
        """Hand one fetch's records to the intake (other topics' records to Faust's conductor).

        One fetch per call, so that no record outlives it in a local variable: a record is
        tracked as unacknowledged until it is acknowledged or garbage (Faust keeps them in a
        weak set), and on a rebalance Faust waits for that set to empty before it lets the
        partitions go. A record the intake dropped on that rebalance, still held by the fetch
        loop while its next fetch waits on paused partitions, would hold the rebalance forever."""
        batched = intake.topics
        read_offsets = self._read_offset  # tracker.streams.read_offsets holds rewinds in it
        acks_enabled_for = self.app.topics.acks_enabled_for
        track = self.track_message
        fetched: list[Message] = []
        # Each partition's last delivered offset, written back once per fetch (Faust writes it
        # per record; the map's hold check made that 5 % of the worker's CPU).
        delivered: dict[Any, int] = {}
        async for tp, message in self.getmany(timeout=1.0):
            offset = message.offset
            last = delivered[tp] if tp in delivered else read_offsets[tp]
            if last is not None and offset < last:
                continue  # a stale fetch after a seek (Faust's own rule)
            if last and offset - last > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, last + 1, offset)
            if message.topic in batched:
                track(message)
                fetched.append(message)
                delivered[tp] = offset
            else:
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
                read_offsets[tp] = offset
        for tp, offset in delivered.items():
            read_offsets[tp] = offset
        if fetched and self.flow_active:
            await intake.put(fetched)

    async def _commit_every_n_acks(self) -> None:
        """Faust's ``broker_commit_every``, checked once per fetch instead of per record."""
        every = self._commit_every
        if every is not None and self._n_acked >= every:
            self._n_acked = 0
            await self.commit()


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


def install(app: Any, intake: BatchIntake, *, fetch_wait_seconds: float | None = None) -> None:
    """Use the batch consumer in ``app`` (before anything touched ``app.consumer``); Kafka may
    hold its fetches up to ``fetch_wait_seconds`` to gather records."""
    app.transport = BatchTransport(app.conf.broker_consumer, app)
    consumer = app.consumer
    if not isinstance(consumer, BatchConsumer):
        raise RuntimeError("the Faust consumer was created before the batch intake was installed")
    consumer.intake = intake
    consumer.fetch_wait_seconds = fetch_wait_seconds
    intake.flowing = app.flow_control.is_active
    intake.generation = lambda: app.consumer_generation_id
    app.flow_control.manage_queue(intake)
