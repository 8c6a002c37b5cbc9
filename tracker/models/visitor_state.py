"""Everything the stream worker keeps for one visitor: the value of its Faust table.

Pure logic. A :class:`VisitorState` holds the visitor's :class:`Profile`
(with its open session and the ids of its recent events), the Kafka position
of the last event folded in, what the idle sweep already emitted, and, after
an erasure, a tombstone instead of a profile.

Why each part is there:

- ``partition``/``offset``: after a crash the worker re-reads events from the
  last committed offset while its table was restored from the changelog, which
  may already include some of them. An event at or below the stored offset is
  skipped exactly, however many events the visitor sent since (the event-id
  memory only covers client retries, within ``dedupe_window``).
- ``emitted``: the idle sweep emits a session before any later event closes
  it; a later event that continues it (it was only late) re-emits it with a
  higher revision, and a session already emitted in its final form is not
  emitted twice. The profile never depends on the sweep, so it stays a
  deterministic function of the events.
- ``rewards``: the reward join of the offers shown to this visitor
  (:class:`~tracker.models.rewards.VisitorRewards` as plain data) and when its next
  reward falls due; a decision can arrive before the visitor's first event, so a
  state may hold rewards and no profile (nothing is written to Redis for it, and it
  goes once its rewards are out).
- ``caps``: the offers served to the visitor this session and today
  (:class:`~tracker.models.caps.ImpressionCounts`), counted from the decisions the
  join takes in: the one writer of the frequency-cap counters the offer API reads,
  so they are erased with the rest and never written after an erasure.
- ``erased``: events for an erased visitor are dropped until a ``consent``
  event granting consent *received after* the erasure request; ``requests``
  remembers handled request ids so that a redelivered erasure never erases
  the profile rebuilt after a new consent.

>>> from tracker.schema import TrackedEvent
>>> ev = TrackedEvent.model_validate({"event": {"event_id": "7a1f0c3e-95b4-4c8e-9a55-0c6b6f2b9d10",
...     "type": "page_view", "ts": 1_763_900_000_000, "site_id": "shop", "visitor_id": "visitor-01"},
...     "server": {"received_at": 1_763_900_000_050}})
>>> state = VisitorState.new("shop", "visitor-01")
>>> state.apply(ev, partition=0, offset=41, config=ProfileConfig()).outcome
'applied'
>>> state.apply(ev, partition=0, offset=41, config=ProfileConfig()).outcome
'replayed'
>>> VisitorState.from_bytes(state.to_bytes()) == state
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from tracker.models.caps import ImpressionCounts
from tracker.models.profile import Profile, ProfileConfig, fold_event
from tracker.models.sessions import Session
from tracker.schema import EventType, SessionRecord, TrackedEvent

STATE_VERSION = 1
# Erasure request ids remembered per visitor (a retried request carries the same id).
MAX_REMEMBERED_REQUESTS = 4

Outcome = Literal["applied", "duplicate", "replayed", "erased", "reprofiled"]


@dataclass(slots=True)
class Applied:
    """The result of :meth:`VisitorState.apply`."""

    outcome: Outcome
    # A session this event closed and that must be emitted on the sessions topic.
    record: SessionRecord | None = None

    @property
    def changed(self) -> bool:
        return self.outcome in ("applied", "reprofiled")


@dataclass(slots=True)
class VisitorState:
    """One visitor's state in the worker's table (key ``site:visitor``)."""

    site_id: str
    visitor_id: str
    profile: Profile | None
    partition: int = -1
    offset: int = -1
    # Server receive time (ms) of the newest event: what the idle sweep and retention go by.
    last_rx: int = 0
    # [session id, events in it, revision] as last emitted on the sessions topic.
    emitted: list[Any] | None = None
    # Tombstone: {"request_id": ..., "requested_at": ms} while the visitor is erased.
    erased: dict[str, Any] | None = None
    requests: list[str] = field(default_factory=list)
    # VisitorRewards.to_dict() while decisions await their feedback, and its next_due_ms().
    rewards: dict[str, Any] | None = None
    rewards_due: int | None = None
    # Offers served (frequency caps), projected to Redis for the offer API.
    caps: ImpressionCounts | None = None

    @classmethod
    def new(cls, site_id: str, visitor_id: str) -> VisitorState:
        return cls(site_id, visitor_id, Profile.new(site_id, visitor_id))

    # --- events -----------------------------------------------------------------------------

    def apply(self, tracked: TrackedEvent, *, partition: int, offset: int, config: ProfileConfig) -> Applied:
        """Fold one record of the ``events`` topic read at ``partition``/``offset``."""
        if partition == self.partition and offset <= self.offset:
            return Applied("replayed")
        self.partition, self.offset = partition, offset
        event, received_at = tracked.event, tracked.server.received_at
        outcome: Outcome = "applied"
        if self.profile is None and self.erased is None:
            self.profile = Profile.new(self.site_id, self.visitor_id)  # held only rewards so far
        if self.erased is not None:
            if not (
                event.type == EventType.CONSENT
                and event.state == "granted"
                and received_at > self.erased["requested_at"]
            ):
                return Applied("erased")
            self.erased, self.emitted = None, None
            self.profile = Profile.new(self.site_id, self.visitor_id)
            outcome = "reprofiled"
        assert self.profile is not None
        folded = fold_event(self.profile, event, received_at=received_at, config=config)
        if not folded.applied:
            return Applied("duplicate")
        self.last_rx = max(self.last_rx, received_at)
        record = None
        if folded.closed is not None and folded.boundary in ("gap", "source"):
            record = self._emit(folded.closed, closed_by=folded.boundary)
        return Applied(outcome, record)

    def _emit(self, session: Session, *, closed_by: str) -> SessionRecord | None:
        """The record for ``session`` unless it was already emitted exactly as it is."""
        revision = 1
        if self.emitted is not None and self.emitted[0] == session.id:
            if self.emitted[1] == session.events:
                return None
            revision = self.emitted[2] + 1
        self.emitted = [session.id, session.events, revision]
        return session.record(self.site_id, self.visitor_id, closed_by=closed_by, revision=revision)

    # --- the idle sweep (wall clock, never touches the profile) ------------------------------

    def idle_session(self, now_ms: int, gap_ms: int) -> tuple[str, int] | None:
        """(session id, events) of an open session idle for longer than ``gap_ms`` of server
        time and not yet emitted as it is; None otherwise."""
        profile = self.profile
        if profile is None or profile.session is None or now_ms - self.last_rx <= gap_ms:
            return None
        session = profile.session
        if self.emitted is not None and self.emitted[:2] == [session.id, session.events]:
            return None
        return session.id, session.events

    def close_idle(self, session_id: str, events: int) -> SessionRecord | None:
        """Emit the open session if it is still the one the sweep saw idle."""
        profile = self.profile
        if profile is None or profile.session is None:
            return None
        session = profile.session
        if session.id != session_id or session.events != events:
            return None  # it moved on since the sweep looked: a later event or sweep decides
        return self._emit(session, closed_by="idle")

    def expired(self, now_ms: int, retention_ms: int) -> bool:
        """Nothing happened for the retention period: the whole entry must go."""
        if self.profile is None and self.erased is None:
            # Only known from decisions: it goes when its rewards are out and its caps bind no more.
            return self.rewards is None and (self.caps is None or not self.caps.live(now_ms))
        last = self.last_rx
        if self.erased is not None:
            last = max(last, int(self.erased["requested_at"]))
        return now_ms - last > retention_ms

    # --- offers served ---------------------------------------------------------------------

    def count_served(self, record: dict[str, Any]) -> None:
        """Count the offer of a ``decisions`` record (new to the join: a redelivery is not
        counted again) towards the visitor's frequency caps."""
        context = record.get("context") or {}
        if self.caps is None:
            self.caps = ImpressionCounts()
        self.caps.record(record["offer_id"], at_ms=int(record["ts"]), session_id=context.get("session_id"))

    # --- erasure ------------------------------------------------------------------------------

    def erase(self, request_id: str, requested_at: int) -> bool:
        """Forget the profile, its session and its event ids; False if this request was handled."""
        if request_id in self.requests:
            return False
        self.requests.append(request_id)
        del self.requests[:-MAX_REMEMBERED_REQUESTS]
        previous = self.erased["requested_at"] if self.erased else 0
        self.erased = {"request_id": request_id, "requested_at": max(previous, requested_at)}
        self.profile, self.emitted = None, None
        self.rewards, self.rewards_due = None, None  # their pending rewards are never learned
        self.caps = None
        return True

    # --- table codec (lossless: a restored state folds on exactly like the one in memory) ----

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "v": STATE_VERSION,
                "site": self.site_id,
                "visitor": self.visitor_id,
                "p": self.profile.to_state() if self.profile is not None else None,
                "at": [self.partition, self.offset],
                "rx": self.last_rx,
                "em": self.emitted,
                "x": self.erased,
                "req": self.requests,
                "rw": self.rewards,
                "due": self.rewards_due,
                "caps": self.caps.to_dict() if self.caps is not None else None,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> VisitorState:
        data = orjson.loads(raw)
        if data.get("v") != STATE_VERSION:
            raise ValueError(
                f"visitor state version {data.get('v')!r} is not {STATE_VERSION}: this worker is older "
                "than the one that wrote its table; upgrade it, or reset the table and replay the events"
            )
        partition, offset = data["at"]
        return cls(
            site_id=data["site"],
            visitor_id=data["visitor"],
            profile=Profile.from_state(data["p"]) if data["p"] is not None else None,
            partition=partition,
            offset=offset,
            last_rx=data["rx"],
            emitted=data["em"],
            erased=data["x"],
            requests=list(data["req"]),
            rewards=data.get("rw"),  # absent in states written before rewards were joined
            rewards_due=data.get("due"),
            caps=ImpressionCounts.from_dict(data["caps"]) if data.get("caps") else None,  # absent before caps
        )
