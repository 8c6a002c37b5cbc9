"""Recovery without loss: a worker killed with SIGKILL mid-stream and restarted, and two workers
sharing partitions through rebalances, end with exactly the profiles of an uninterrupted run
(the pure fold of the same records in partition order).

Bounded: a few thousand records produced over ~10-15 s, every wait capped.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from streams_support import (
    Producer,
    Worker,
    expected_profiles,
    isolated_settings,
    produce_paced,
    stored_profiles,
    visit_script,
    wait_for,
)

from tracker.devstack.process import free_port

pytestmark = pytest.mark.integration


def converged(settings, site_id: str, expected: dict[str, dict]):
    def check():
        stored = stored_profiles(settings, site_id, expected)
        return stored if stored == expected else None

    return check


def events_in_redis(settings, site_id: str, visitors: list[str]) -> int:
    return sum(sum(p["counts"].values()) for p in stored_profiles(settings, site_id, visitors).values())


def dump_written(producer: Producer, path: Path) -> None:
    with path.open("w") as out:
        for partition, offset, record in sorted(producer.written, key=lambda w: (w[0], w[1])):
            out.write(f"{partition} {offset} {record.event.visitor_id} {record.event.event_id}\n")


def diff(settings, site_id: str, expected: dict[str, dict]) -> list[str]:
    """Each differing visitor with the fields that differ: (stored, expected)."""
    stored = stored_profiles(settings, site_id, expected)
    out = []
    for visitor, want in expected.items():
        got = stored.get(visitor)
        if got == want:
            continue
        if got is None:
            out.append(f"{visitor}: missing")
            continue
        fields = {k: (got.get(k), want.get(k)) for k in want.keys() | got.keys() if got.get(k) != want.get(k)}
        out.append(f"{visitor}: {fields}")
    return out


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_sigkill_at_any_moment_then_restart_ends_with_identical_profiles(
    stack, site_id: str, tmp_path: Path, store: str
) -> None:
    # Small batches and a slow commit: a kill always lands between commits, with records whose
    # changelog and Redis writes are done but whose offsets are not committed. The memory store
    # restarts from the changelog; rocksdb from its local files (written up to the kill) + the tail.
    settings = isolated_settings(
        stack,
        worker_batch_max=25,
        worker_commit_interval_seconds=1.0,
        worker_store=store,
        worker_data_dir=tmp_path / "data",
    )
    visitors = [f"v-{uuid.uuid4().hex[:10]}" for _ in range(40)]
    records = visit_script(site_id, visitors, events_each=50)
    producer = Producer(settings)
    worker = Worker(settings, tmp_path, "run-1").start()
    sender = produce_paced(producer, records, seconds=12)
    try:
        for attempt in range(2):
            before = events_in_redis(settings, site_id, visitors)
            wait_for(
                lambda before=before: events_in_redis(settings, site_id, visitors) > before + 150,
                90,
                f"the worker to make progress before kill {attempt + 1}",
            )
            worker.kill()
            worker = Worker(settings, tmp_path, f"run-{attempt + 2}").start()
        sender.join(timeout=60)
        expected = expected_profiles(settings, producer.written)
        assert len(expected) == len(visitors)
        try:
            wait_for(converged(settings, site_id, expected), 120, "identical profiles after the kills")
        except AssertionError:
            dump_written(producer, tmp_path / "written.txt")  # to match against the worker logs
            raise AssertionError(f"profiles differ for {diff(settings, site_id, expected)[:5]}") from None
        # The last restart really re-read records the table already had (and skipped them).
        assert worker.metric("tracker_worker_duplicates_skipped_total", reason="offset") > 0
    finally:
        worker.stop()
        producer.close()


def test_two_workers_share_partitions_and_rebalances_lose_nothing(
    stack, site_id: str, tmp_path: Path
) -> None:
    settings = isolated_settings(stack, worker_batch_max=50)
    second_settings = settings.model_copy(update={"worker_web_port": free_port()})
    visitors = [f"v-{uuid.uuid4().hex[:10]}" for _ in range(40)]
    records = visit_script(site_id, visitors, events_each=40, seed=2)
    producer = Producer(settings)
    first = Worker(settings, tmp_path, "first").start()
    sender = produce_paced(producer, records, seconds=10)
    second = None
    try:
        wait_for(lambda: first.metric("tracker_worker_events_total") > 100, 60, "the first worker consuming")
        second = Worker(second_settings, tmp_path, "second").start()  # rebalance: partitions are split
        wait_for(
            lambda: second.metric("tracker_worker_events_total") > 0,
            90,
            "the second worker taking partitions",
        )
        first.stop()  # rebalance again: the second worker takes every partition
        sender.join(timeout=60)
        expected = expected_profiles(settings, producer.written)
        try:
            wait_for(converged(settings, site_id, expected), 120, "identical profiles after the rebalances")
        except AssertionError:
            dump_written(producer, tmp_path / "written.txt")  # to match against the worker logs
            raise AssertionError(f"profiles differ for {diff(settings, site_id, expected)[:5]}") from None
    finally:
        first.stop()
        if second is not None:
            second.stop()
        producer.close()
