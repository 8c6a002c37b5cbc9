"""Rewards: join each decision with its impression, click and purchases inside an attribution window.

The reward joiner (a Faust agent) keeps one :class:`VisitorRewards` per
visitor, keyed like every other per-visitor record (``site:visitor``), and
feeds it three things:

- :meth:`VisitorRewards.add_decision` for each record of the ``decisions`` topic;
- :meth:`VisitorRewards.on_event` for each ``offer_impression``,
  ``offer_click`` and ``purchase`` event of the visitor (:meth:`Feedback.from_event`);
- :meth:`VisitorRewards.on_tick` from a timer: it returns the rewards whose
  window has closed, and forgets them.

Rules (all times epoch ms; events use their client time clamped to the server
receive time, like profiles do):

- a decision's window is ``[decided_at - clock_skew, decided_at + window)``;
  impressions and clicks carry the ``decision_id`` and count only inside it.
  A click implies an impression;
- a purchase carries no decision id: it goes to the visitor's decision whose
  click is the latest at or before the purchase (last click), if the purchase
  is inside that decision's window. Its value is the conversion value;
- a decision is finished ``lateness`` after its window closes (time for late
  events to arrive); its reward is 1 if it was clicked, else 0. Its id is
  remembered for another window + lateness after the visitor's last reward, so
  feedback that comes later still is recognised as late (``finished``: a sign
  that ``lateness`` is too short for the pipeline's delays), not mistaken for
  feedback still waiting for its decision;
- events that arrive before their decision (the two come from different
  topics) wait, bounded in number and time, until it arrives;
- everything is idempotent: a decision or an event delivered twice counts once.

The state is plain data (:meth:`VisitorRewards.to_dict`), small and bounded,
so it fits a Faust table. Erasing a visitor deletes it: their pending rewards
are never learned.

>>> join = VisitorRewards("shop", "visitor-0001", AttributionConfig(window_ms=60_000, lateness_ms=0))
>>> join.add_decision({"decision_id": "d1", "offer_id": "run", "ts": 1_000_000, "propensity": 0.9})
True
>>> join.on_event(Feedback("click", "e1", 1_010_000, decision_id="d1", offer_id="run"))
'joined'
>>> join.on_tick(1_059_999)
[]
>>> [(r.decision_id, r.reward, r.impressed) for r in join.on_tick(1_060_000)]
[('d1', 1.0, True)]
>>> join.on_event(Feedback("click", "e2", 1_020_000, decision_id="d1", offer_id="run"))
'finished'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tracker.schema import Event, EventType

if TYPE_CHECKING:
    from tracker.settings import Settings

REWARDS_SCHEMA_VERSION = 1

FeedbackKind = Literal["impression", "click", "purchase"]


@dataclass(frozen=True, slots=True)
class AttributionConfig:
    """How long a decision waits for its click and conversion.

    Parameters
    ----------
    window_ms
        The attribution window, from the decision.
    lateness_ms
        Extra wait after the window for events still in flight.
    clock_skew_ms
        How far before the decision a client clock may date its impression or click.
    max_pending
        Open decisions kept per visitor; the oldest is finished early beyond it.
    max_orphans
        Events kept per visitor while their decision has not arrived.
    """

    window_ms: int = 30 * 60 * 1000
    lateness_ms: int = 60 * 1000
    clock_skew_ms: int = 5 * 60 * 1000
    max_pending: int = 64
    max_orphans: int = 64

    @classmethod
    def from_settings(cls, settings: Settings) -> AttributionConfig:
        """``TRACKER_ATTRIBUTION_WINDOW_SECONDS`` and ``..._LATENESS_SECONDS``; the other bounds keep
        their defaults."""
        return cls(
            window_ms=int(settings.attribution_window_seconds * 1000),
            lateness_ms=int(settings.attribution_lateness_seconds * 1000),
        )

    def __post_init__(self) -> None:
        if self.window_ms <= 0:
            raise ValueError(f"attribution window {self.window_ms} ms must be positive")
        if self.lateness_ms < 0 or self.clock_skew_ms < 0:
            raise ValueError("lateness_ms and clock_skew_ms must not be negative")
        if self.max_pending < 1 or self.max_orphans < 0:
            raise ValueError("max_pending must be at least 1 and max_orphans at least 0")


@dataclass(frozen=True, slots=True)
class Feedback:
    """One event that can reward a decision."""

    kind: FeedbackKind
    event_id: str
    at_ms: int
    decision_id: str | None = None
    offer_id: str | None = None
    value: float = 0.0

    @classmethod
    def from_event(cls, event: Event, *, received_at: int | None = None) -> Feedback | None:
        """The feedback in a tracked event, or None for event types that are not feedback."""
        kind = _FEEDBACK_KINDS.get(event.type)
        if kind is None:  # most events: nothing more to do (this runs for every event)
            return None
        at = event.ts if received_at is None else min(event.ts, received_at)
        if kind == "purchase":
            return cls(kind, str(event.event_id), at, value=float(event.value))
        return cls(kind, str(event.event_id), at, decision_id=event.decision_id, offer_id=event.offer_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.event_id,
            "at": self.at_ms,
            "decision": self.decision_id,
            "offer": self.offer_id,
            "value": self.value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Feedback:
        return cls(data["kind"], data["id"], int(data["at"]), data["decision"], data["offer"], data["value"])


_FEEDBACK_KINDS: dict[EventType, FeedbackKind] = {
    EventType.OFFER_IMPRESSION: "impression",
    EventType.OFFER_CLICK: "click",
    EventType.PURCHASE: "purchase",
}


@dataclass(frozen=True, slots=True)
class Reward:
    """A finished decision: what the trainer learns from, and what reports count."""

    decision_id: str
    site_id: str
    visitor_id: str
    offer_id: str
    slot: str | None
    decided_at: int
    finished_at: int
    propensity: float
    model_version: str | None
    holdout: bool
    features: dict[str, float]
    impressed: bool
    clicked: bool
    conversion_value: float

    @property
    def reward(self) -> float:
        """The click reward: 1 for a click inside the window, else 0."""
        return 1.0 if self.clicked else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": REWARDS_SCHEMA_VERSION,
            "decision_id": self.decision_id,
            "site_id": self.site_id,
            "visitor_id": self.visitor_id,
            "offer_id": self.offer_id,
            "slot": self.slot,
            "decided_at": self.decided_at,
            "finished_at": self.finished_at,
            "propensity": self.propensity,
            "model_version": self.model_version,
            "holdout": self.holdout,
            "features": self.features,
            "impressed": self.impressed,
            "clicked": self.clicked,
            "conversion_value": self.conversion_value,
            "reward": self.reward,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reward:
        return cls(
            decision_id=data["decision_id"],
            site_id=data["site_id"],
            visitor_id=data["visitor_id"],
            offer_id=data["offer_id"],
            slot=data.get("slot"),
            decided_at=int(data["decided_at"]),
            finished_at=int(data["finished_at"]),
            propensity=float(data["propensity"]),
            model_version=data.get("model_version"),
            holdout=bool(data.get("holdout", False)),
            features={str(k): float(v) for k, v in (data.get("features") or {}).items()},
            impressed=bool(data["impressed"]),
            clicked=bool(data["clicked"]),
            conversion_value=float(data["conversion_value"]),
        )


@dataclass(slots=True)
class _Pending:
    decision_id: str
    offer_id: str
    slot: str | None
    decided_at: int
    propensity: float
    model_version: str | None
    holdout: bool
    features: dict[str, float]
    impressed_at: int | None = None
    clicked_at: int | None = None
    value: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.decision_id,
            "offer": self.offer_id,
            "slot": self.slot,
            "at": self.decided_at,
            "p": self.propensity,
            "model": self.model_version,
            "holdout": self.holdout,
            "x": self.features,
            "imp": self.impressed_at,
            "click": self.clicked_at,
            "value": self.value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Pending:
        return cls(
            data["id"], data["offer"], data["slot"], int(data["at"]), float(data["p"]), data["model"],
            bool(data["holdout"]), dict(data["x"]), data["imp"], data["click"], float(data["value"]),
        )  # fmt: skip


@dataclass(slots=True)
class VisitorRewards:
    """The reward join state of one visitor (see the module docstring)."""

    site_id: str
    visitor_id: str
    config: AttributionConfig = field(default_factory=AttributionConfig)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _orphans: list[Feedback] = field(default_factory=list)
    # Recently finished decisions and counted purchases: a redelivery must not count twice.
    _done: list[str] = field(default_factory=list)
    _purchases: list[str] = field(default_factory=list)
    # Decisions pushed out by max_pending, finished at the next tick.
    _ready: list[str] = field(default_factory=list)
    # When the memory of finished decisions may go (window + lateness after the last reward).
    _forget_at: int | None = None

    def add_decision(self, record: Mapping[str, Any]) -> bool:
        """Start waiting for a decision's feedback; False if it is already known or shows nothing."""
        decision_id = record["decision_id"]
        offer_id = record.get("offer_id")
        if offer_id is None or decision_id in self._pending or decision_id in self._done:
            return False
        pending = _Pending(
            decision_id=decision_id,
            offer_id=offer_id,
            slot=record.get("slot"),
            decided_at=int(record["ts"]),
            propensity=float(record.get("propensity", 1.0)),
            model_version=record.get("model_version"),
            holdout=bool(record.get("holdout", False)),
            features={str(k): float(v) for k, v in (record.get("features") or {}).items()},
        )
        self._pending[decision_id] = pending
        waiting = [f for f in self._orphans if f.decision_id == decision_id]
        if waiting:
            self._orphans = [f for f in self._orphans if f.decision_id != decision_id]
            for feedback in sorted(waiting, key=lambda f: f.at_ms):
                self._apply(pending, feedback)
        if len(self._pending) > self.config.max_pending:
            # Bounded state: finish the oldest early (it keeps whatever it has got so far).
            waiting_ids = [p for p in self._pending.values() if p.decision_id not in self._ready]
            oldest = min(waiting_ids, key=lambda p: (p.decided_at, p.decision_id))
            self._ready.append(oldest.decision_id)
        return True

    def on_event(self, feedback: Feedback) -> str:
        """Fold one impression, click or purchase of this visitor into the open decisions.

        Returns what became of it (the stream worker counts these): ``joined`` (to an open
        decision), ``waiting`` (its decision, or for a purchase a click, is not here yet),
        ``finished`` (its decision's reward was already emitted: the feedback came later than
        window + lateness, in processing time), ``outside_window`` (its own time is outside the
        decision's window), ``other_offer``, or ``no_decision`` (no decision id).
        """
        if feedback.kind == "purchase":
            return self._on_purchase(feedback)
        if feedback.decision_id is None:
            return "no_decision"
        if feedback.decision_id in self._done:
            return "finished"
        pending = self._pending.get(feedback.decision_id)
        if pending is None:
            self._keep_orphan(feedback)
            return "waiting"
        return self._apply(pending, feedback)

    def on_tick(self, now_ms: int) -> list[Reward]:
        """The rewards whose window (plus lateness) has closed by ``now_ms``; they are forgotten here."""
        cfg = self.config
        early = set(self._ready)
        self._ready.clear()
        finished = [
            p
            for p in self._pending.values()
            if p.decision_id in early or now_ms >= p.decided_at + cfg.window_ms + cfg.lateness_ms
        ]
        finished.sort(key=lambda p: (p.decided_at, p.decision_id))
        rewards = []
        horizon = cfg.window_ms + cfg.lateness_ms
        for pending in finished:
            del self._pending[pending.decision_id]
            self._remember(self._done, pending.decision_id)
            rewards.append(self._reward(pending, now_ms))
        if rewards:
            self._forget_at = now_ms + horizon
        elif not self._pending and self._forget_at is not None and now_ms >= self._forget_at:
            self._done.clear()
            self._purchases.clear()
            self._forget_at = None
        self._orphans = [f for f in self._orphans if now_ms < f.at_ms + horizon + cfg.clock_skew_ms]
        return rewards

    @property
    def next_due_ms(self) -> int | None:
        """When the next open decision finishes, or else when the memory of finished ones may
        go (None if there is neither): when to tick next."""
        if not self._pending:
            # Feedback waiting for a decision that never came is dropped after its horizon.
            cfg = self.config
            horizon = cfg.window_ms + cfg.lateness_ms + cfg.clock_skew_ms
            dues = [f.at_ms + horizon for f in self._orphans]
            if self._forget_at is not None:
                dues.append(self._forget_at)
            return min(dues, default=None)
        if self._ready:
            return 0  # pushed out by max_pending: due at once
        first = min(p.decided_at for p in self._pending.values())
        return first + self.config.window_ms + self.config.lateness_ms

    @property
    def idle(self) -> bool:
        """Nothing open, waiting or remembered: the joiner may drop this state."""
        return not self._pending and not self._orphans and self._forget_at is None

    # --- Internals -------------------------------------------------------------------

    def _apply(self, pending: _Pending, feedback: Feedback) -> str:
        if not self._in_window(pending, feedback.at_ms):
            return "outside_window"
        if feedback.offer_id is not None and feedback.offer_id != pending.offer_id:
            return "other_offer"  # an id reused for another offer: not this decision's feedback
        if pending.impressed_at is None or feedback.at_ms < pending.impressed_at:
            pending.impressed_at = feedback.at_ms
        if feedback.kind == "click" and (pending.clicked_at is None or feedback.at_ms < pending.clicked_at):
            pending.clicked_at = feedback.at_ms
            # A purchase may have arrived before this click did.
            for orphan in [f for f in self._orphans if f.kind == "purchase"]:
                if self._attribute(orphan):
                    self._orphans.remove(orphan)
        return "joined"

    def _on_purchase(self, feedback: Feedback) -> str:
        if feedback.event_id in self._purchases:
            return "joined"  # already attributed (a redelivery)
        if not self._attribute(feedback):
            self._keep_orphan(feedback)
            return "waiting"
        return "joined"

    def _attribute(self, purchase: Feedback) -> bool:
        """Give the purchase to the last decision clicked before it, if inside its window."""
        clicked = [
            p
            for p in self._pending.values()
            if p.clicked_at is not None
            and p.clicked_at <= purchase.at_ms
            and self._in_window(p, purchase.at_ms)
        ]
        if not clicked:
            return False
        last = max(clicked, key=lambda p: (p.clicked_at, p.decision_id))
        last.value += max(0.0, purchase.value)
        self._remember(self._purchases, purchase.event_id)
        return True

    def _in_window(self, pending: _Pending, at_ms: int) -> bool:
        cfg = self.config
        return pending.decided_at - cfg.clock_skew_ms <= at_ms < pending.decided_at + cfg.window_ms

    def _keep_orphan(self, feedback: Feedback) -> None:
        if any(f.event_id == feedback.event_id for f in self._orphans):
            return
        self._orphans.append(feedback)
        del self._orphans[: -self.config.max_orphans or len(self._orphans)]

    def _remember(self, memory: list[str], item: str) -> None:
        memory.append(item)
        del memory[: -4 * self.config.max_pending]

    def _reward(self, pending: _Pending, now_ms: int) -> Reward:
        return Reward(
            decision_id=pending.decision_id,
            site_id=self.site_id,
            visitor_id=self.visitor_id,
            offer_id=pending.offer_id,
            slot=pending.slot,
            decided_at=pending.decided_at,
            finished_at=now_ms,
            propensity=pending.propensity,
            model_version=pending.model_version,
            holdout=pending.holdout,
            features=pending.features,
            impressed=pending.impressed_at is not None,
            clicked=pending.clicked_at is not None,
            conversion_value=pending.value if pending.clicked_at is not None else 0.0,
        )

    # --- Plain data --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": REWARDS_SCHEMA_VERSION,
            "site": self.site_id,
            "visitor": self.visitor_id,
            "pending": [p.to_dict() for p in self._pending.values()],
            "orphans": [f.to_dict() for f in self._orphans],
            "done": list(self._done),
            "purchases": list(self._purchases),
            "ready": list(self._ready),
            "forget": self._forget_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], config: AttributionConfig) -> VisitorRewards:
        if data.get("v") != REWARDS_SCHEMA_VERSION:
            raise ValueError(
                f"reward join state layout {data.get('v')!r} is not {REWARDS_SCHEMA_VERSION}; "
                "drop it (its open decisions go unrewarded) or migrate it"
            )
        state = cls(data["site"], data["visitor"], config)
        state._pending = {p["id"]: _Pending.from_dict(p) for p in data["pending"]}
        state._orphans = [Feedback.from_dict(f) for f in data["orphans"]]
        state._done = list(data["done"])
        state._purchases = list(data["purchases"])
        state._ready = list(data.get("ready", []))
        state._forget_at = data.get("forget")  # absent in states written before it was kept
        return state
