"""The worker's per-visitor state (pure logic): exact replay after a crash, erasure and consent,
sessions emitted once by the sweep or by a later event."""

from __future__ import annotations

import random
import uuid

from tracker.models.profile import ProfileConfig
from tracker.models.sessions import SessionRules
from tracker.models.visitor_state import VisitorState
from tracker.schema import TrackedEvent

T0 = 1_763_900_000_000
MIN = 60_000
CONFIG = ProfileConfig(half_life_seconds=3600, dedupe_window=8, sessions=SessionRules(gap_ms=30 * MIN))


def tracked(
    type_: str = "product_view", ts: int = T0, received_at: int | None = None, event_id=None, **extra
):
    event = {
        "event_id": event_id or str(uuid.uuid4()),
        "type": type_,
        "ts": ts,
        "site_id": "shop",
        "visitor_id": "visitor-01",
        **extra,
    }
    if type_ == "product_view":
        event.setdefault("product_id", "sku-1")
        event.setdefault("category", "shoes")
    return TrackedEvent.model_validate({"event": event, "server": {"received_at": received_at or ts}})


def script(n: int, seed: int = 5) -> list[TrackedEvent]:
    """A visitor's events: views, pings, carts, sessions split by gaps, client retries."""
    rng = random.Random(seed)
    events, ts = [], T0
    for _ in range(n):
        ts += rng.choice([5_000, 40_000, 2 * MIN, 45 * MIN])
        kind = rng.choice(["product_view", "product_view", "page_view", "page_ping", "add_to_cart"])
        extra = {"product_id": f"sku-{rng.randrange(12)}", "category": rng.choice(["a", "b", "c"])}
        if kind == "page_view":
            extra = {"url": "https://shop.example/"}
        elif kind == "page_ping":
            extra = {"engaged_ms": rng.randrange(0, 60_000), "scroll_depth": rng.randrange(101)}
        events.append(tracked(kind, ts, **extra))
        if rng.random() < 0.1:
            events.append(events[-1])  # the same event sent twice (a client retry)
    return events


def run(events: list[TrackedEvent], crash_after: list[int] | None = None) -> tuple[VisitorState, list]:
    """Fold ``events`` (offsets 0..n-1); at each crash point, restore from the last 'changelog'
    copy taken every 3 events and re-read from the last 'committed' offset (every 7 events)."""
    state, records = VisitorState.new("shop", "visitor-01"), []
    changelog, committed = state.to_bytes(), 0
    offset = 0
    crashes = sorted(crash_after or [])
    while offset < len(events):
        if crashes and offset == crashes[0]:
            crashes.pop(0)
            state, offset = VisitorState.from_bytes(changelog), committed
            continue
        result = state.apply(events[offset], partition=0, offset=offset, config=CONFIG)
        if result.record is not None:
            records.append(result.record)
        offset += 1
        if offset % 3 == 0:
            changelog = state.to_bytes()
        if offset % 7 == 0:
            committed = offset - 2  # commits lag behind the changelog
    return state, records


def test_a_crash_anywhere_ends_with_the_same_profile_as_an_uninterrupted_run() -> None:
    events = script(120)
    expected, expected_records = run(events)
    rng = random.Random(11)
    for _ in range(25):
        crashes = sorted(rng.sample(range(1, len(events)), 4))
        state, records = run(events, crashes)
        assert state.profile.to_dict() == expected.profile.to_dict(), crashes
        assert state.profile == expected.profile
        # Sessions may be emitted again after a crash (at-least-once), never lost.
        assert {r.session_id for r in records} >= {r.session_id for r in expected_records}


def test_redelivered_records_are_skipped_by_offset_even_past_the_id_window() -> None:
    events = script(40)
    state, _ = run(events)
    before = state.profile.to_dict()
    for offset, event in enumerate(events):
        assert state.apply(event, partition=0, offset=offset, config=CONFIG).outcome == "replayed"
    assert state.profile.to_dict() == before


def test_client_retries_are_skipped_by_event_id() -> None:
    event = tracked()
    state = VisitorState.new("shop", "visitor-01")
    assert state.apply(event, partition=0, offset=0, config=CONFIG).outcome == "applied"
    assert state.apply(event, partition=0, offset=1, config=CONFIG).outcome == "duplicate"
    assert state.profile.counts == {"product_view": 1}


def test_erasure_forgets_everything_until_consent_is_granted_after_it() -> None:
    state = VisitorState.new("shop", "visitor-01")
    old = tracked(ts=T0)
    state.apply(old, partition=0, offset=0, config=CONFIG)
    assert state.erase("a" * 32, requested_at=T0 + MIN)
    assert state.profile is None and state.erased["request_id"] == "a" * 32
    stale_consent = tracked("consent", ts=T0 + 30_000, state="granted")
    assert state.apply(stale_consent, partition=0, offset=1, config=CONFIG).outcome == "erased"
    assert state.apply(tracked(ts=T0 + 2 * MIN), partition=0, offset=2, config=CONFIG).outcome == "erased"
    consent = tracked("consent", ts=T0 + 3 * MIN, state="granted")
    assert state.apply(consent, partition=0, offset=3, config=CONFIG).outcome == "reprofiled"
    # The old event id was forgotten with the profile: sent again, it counts in the new profile.
    assert state.apply(old, partition=0, offset=4, config=CONFIG).outcome == "applied"
    assert state.profile.counts == {"consent": 1, "product_view": 1}
    # The same erasure request redelivered does not erase the new profile.
    assert not state.erase("a" * 32, requested_at=T0 + MIN)
    assert state.profile is not None


def test_the_sweep_emits_an_idle_session_once_and_a_late_event_re_emits_it() -> None:
    state = VisitorState.new("shop", "visitor-01")
    state.apply(tracked(ts=T0), partition=0, offset=0, config=CONFIG)
    gap = CONFIG.sessions.gap_ms
    assert state.idle_session(T0 + gap - 1, gap) is None
    idle = state.idle_session(T0 + gap + 1, gap)
    assert idle is not None
    record = state.close_idle(*idle)
    assert record is not None and record.closed_by == "idle" and record.revision == 1
    assert state.idle_session(T0 + gap + 2, gap) is None  # emitted as it is: not again
    # A late event of the same session (client clock, delayed delivery) re-opens it ...
    state.apply(tracked(ts=T0 + MIN, received_at=T0 + gap + 5), partition=0, offset=1, config=CONFIG)
    again = state.close_idle(*state.idle_session(T0 + 3 * gap, gap))
    assert again.revision == 2 and again.events == 2
    # ... and a new session after the gap does not emit the already-emitted one a third time.
    result = state.apply(tracked(ts=T0 + 3 * gap), partition=0, offset=2, config=CONFIG)
    assert result.record is None and state.profile.sessions == 2


def test_a_later_event_after_the_gap_closes_the_session() -> None:
    state = VisitorState.new("shop", "visitor-01")
    state.apply(tracked(ts=T0), partition=0, offset=0, config=CONFIG)
    result = state.apply(tracked(ts=T0 + 31 * MIN), partition=0, offset=1, config=CONFIG)
    assert result.record is not None and result.record.closed_by == "gap" and result.record.events == 1


def test_entries_expire_after_the_retention_period_of_inactivity() -> None:
    state = VisitorState.new("shop", "visitor-01")
    state.apply(tracked(ts=T0), partition=0, offset=0, config=CONFIG)
    assert not state.expired(T0 + 1000, retention_ms=10_000)
    assert state.expired(T0 + 20_000, retention_ms=10_000)


def test_erasures_are_routed_with_kafkas_default_partitioner() -> None:
    """The worker re-keys erasures onto the visitor's events partition with murmur2: the Java
    client's, kafka-python's and aiokafka's default (the collector's producer must use it too)."""
    from kafka.partitioner.default import murmur2  # kafka-python's own implementation

    from tracker.streams.control import key_partition

    for n in range(200):
        key = f"site-{n % 7}:visitor-{n:08d}".encode()
        for partitions in (1, 4, 12):
            assert key_partition(key, partitions) == (murmur2(key) & 0x7FFFFFFF) % partitions


def test_offers_served_are_counted_kept_and_erased_with_the_visitor() -> None:
    """A visitor known only from decisions keeps their caps while they bind (today, or the
    session), across a restore, and loses them with everything else on erasure."""
    state = VisitorState("shop", "visitor-0007", profile=None)
    for n, offer_id in enumerate(["run", "run", "pan"]):
        state.count_served({"offer_id": offer_id, "ts": T0 + n, "context": {"session_id": "s1"}})
    assert state.caps is not None and state.caps.today == {"run": 2, "pan": 1}
    restored = VisitorState.from_bytes(state.to_bytes())
    assert restored == state
    retention = 30 * 86_400_000
    assert not state.expired(T0 + 60_000, retention), "its caps still bind today"
    next_day = (T0 // 86_400_000 + 1) * 86_400_000 + 31 * 60_000
    assert state.expired(next_day, retention), "nothing binds any more: the entry may go"
    assert state.erase("r1", T0 + 1) and state.caps is None
