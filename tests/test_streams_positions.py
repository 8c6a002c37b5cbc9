"""The input-position gate of the stream worker (pure logic: no Kafka)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tracker.models.visitor_state import VisitorState
from tracker.streams.codec import VisitorStateCodec
from tracker.streams.positions import (
    InputPosition,
    Rewinds,
    StallWatch,
    classify,
    is_position_key,
    position_key,
)
from tracker.streams.read_offsets import HeldReadOffsets, install


def test_records_are_next_behind_or_ahead_of_the_stored_position() -> None:
    assert classify(None, 1234) == "next"  # nothing stored yet: the first record sets it
    assert classify(10, 10) == "next"
    assert classify(10, 3) == "behind"
    assert classify(10, 11) == "ahead"


def test_position_keys_never_collide_with_visitor_keys() -> None:
    key = position_key("events", 3)
    assert is_position_key(key)
    assert b":" not in key.split(b"\x00")[1]  # no site:visitor key starts with a NUL byte
    assert not is_position_key(b"shop:visitor-1")
    assert position_key("events", 3) != position_key("events", 13)
    assert position_key("events", 1) != position_key("control", 1)


def test_the_table_codec_round_trips_positions_and_states() -> None:
    codec = VisitorStateCodec()
    position = InputPosition(987_654)
    assert codec.loads(codec.dumps(position)) == position
    state = VisitorState.new("shop", "v-1")
    assert codec.loads(codec.dumps(state)) == state
    with pytest.raises(TypeError, match="VisitorState and InputPosition"):
        codec.dumps({"not": "a state"})


def test_one_seek_per_gap_then_again_only_after_the_reseek_interval() -> None:
    rewinds = Rewinds(reseek_seconds=2.0, max_seeks=3)
    tp = ("events", 0)
    assert rewinds.should_seek(tp, 311, now=100.0)
    assert not rewinds.should_seek(tp, 311, now=100.5)  # records fetched before the seek
    assert not rewinds.exhausted(tp, 311)
    assert rewinds.should_seek(tp, 311, now=102.1)
    assert rewinds.should_seek(tp, 311, now=104.2)
    assert rewinds.exhausted(tp, 311)
    # Another partition, or another gap on the same partition, is a seek of its own.
    assert rewinds.should_seek(("events", 1), 50, now=104.3)
    assert rewinds.should_seek(tp, 400, now=104.3)
    assert not rewinds.exhausted(tp, 400)


def test_the_expected_record_arriving_ends_the_rewind() -> None:
    rewinds = Rewinds()
    tp = ("events", 2)
    rewinds.should_seek(tp, 96, now=1.0)
    assert rewinds.pending() == 1
    rewinds.arrived(tp)
    assert rewinds.pending() == 0
    assert rewinds.should_seek(tp, 96, now=1.1)  # a new gap at the same offset later: seek again


def test_seeks_are_repeated_when_no_record_resolves_them() -> None:
    rewinds = Rewinds(reseek_seconds=2.0, max_seeks=3)
    rewinds.should_seek(("events", 0), 10, now=0.0)
    assert rewinds.due(now=1.0) == []
    assert rewinds.due(now=2.5) == [(("events", 0), 10)]
    assert rewinds.due(now=3.0) == []  # just issued again
    assert rewinds.due(now=5.0) == [(("events", 0), 10)]
    assert rewinds.due(now=9.0) == []  # max_seeks reached: the next ahead record decides
    assert rewinds.exhausted(("events", 0), 10)


def test_faust_read_offsets_stay_at_the_rewind_target() -> None:
    class FakeConsumer:  # only the attribute Faust's fetch loop reads and writes
        _read_offset: dict = defaultdict(lambda: None, {("events", 1): 7})

    rewinds = Rewinds()
    consumer = FakeConsumer()
    install(consumer, rewinds.target)
    install(consumer, rewinds.target)  # idempotent
    offsets = consumer._read_offset
    assert isinstance(offsets, HeldReadOffsets) and offsets[("events", 1)] == 7
    assert offsets[("events", 9)] is None  # still a defaultdict
    rewinds.should_seek(("events", 1), 486, now=0.0)
    offsets[("events", 1)] = 520  # a record of an older fetch delivered after the seek
    assert offsets[("events", 1)] == 486  # so the re-fetched 486.. are not dropped
    offsets[("events", 2)] = 520  # other partitions are untouched
    assert offsets[("events", 2)] == 520
    rewinds.arrived(("events", 1))
    offsets[("events", 1)] = 530
    assert offsets[("events", 1)] == 530


def test_a_partition_stuck_short_of_its_high_watermark_is_stalled_after_a_while() -> None:
    watch = StallWatch(stall_seconds=5.0)
    tp = ("events", 3)
    assert not watch.stalled(tp, 100, 100, now=0.0)  # caught up
    assert not watch.stalled(tp, 100, 101, now=1.0)  # a record past it: start watching
    assert not watch.stalled(tp, 100, 101, now=5.5)
    assert watch.stalled(tp, 100, 101, now=6.1)  # no progress for 5 s: a skipped last record
    assert not watch.stalled(tp, 101, 130, now=6.2)  # it moved: a busy worker, not a stall
    assert not watch.stalled(tp, 120, 130, now=12.0)
    assert not watch.stalled(tp, 130, 130, now=30.0)
    assert not watch.stalled(tp, None, 130, now=40.0)  # nothing stored yet: nothing to compare
