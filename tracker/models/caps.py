"""Frequency caps: how many times one visitor saw each offer this session and today.

:class:`ImpressionCounts` is the per-visitor state behind ``caps.per_session``
and ``caps.per_day``. The stream worker counts each offer served
(:meth:`ImpressionCounts.record`) as it takes in the offer API's decision
records (a banner is counted when served: the page renders what it is served),
keeps the counts in the visitor's state and writes them to
``trk:v1:caps:{site:visitor}`` (:meth:`ImpressionCounts.to_dict` as JSON); the
offer API reads them with the profile in its one round trip and asks
:meth:`ImpressionCounts.session_count` and :meth:`ImpressionCounts.day_count`.
One writer per visitor, in order with the visitor's erasure: no compare-and-set,
and nothing written after an erasure. A count reaches the API tens of
milliseconds after its decision (the pipeline's delay): caps are at most that
much more lenient, never stricter.

Days are UTC calendar days. A session is the ``session_id`` the events carry;
when a caller does not know it, a session is over after
``session_gap_ms`` without an impression (30 minutes, like the snippet's).

>>> counts = ImpressionCounts()
>>> counts.record("run", at_ms=1_763_900_000_000, session_id="s1", decision_id="d1")
True
>>> counts.record("run", at_ms=1_763_900_001_000, session_id="s1", decision_id="d1")
False
>>> counts.session_count("run", now_ms=1_763_900_002_000, session_id="s1")
1
>>> counts.session_count("run", now_ms=1_763_900_002_000, session_id="s2")
0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CAPS_SCHEMA_VERSION = 1
DAY_MS = 86_400_000
SESSION_GAP_MS = 30 * 60 * 1000
# Decision ids remembered to make recording idempotent (a visitor sees few offers per day).
REMEMBERED_DECISIONS = 64


@dataclass(slots=True)
class ImpressionCounts:
    """Impressions per offer of one visitor in their current session and on the current UTC day."""

    session_id: str | None = None
    day: int = -1
    last_at: int = 0
    session: dict[str, int] = field(default_factory=dict)
    today: dict[str, int] = field(default_factory=dict)
    decisions: list[str] = field(default_factory=list)

    def record(
        self, offer_id: str, *, at_ms: int, session_id: str | None = None, decision_id: str | None = None
    ) -> bool:
        """Count one impression; False (nothing changed) if this decision was already counted."""
        if decision_id is not None:
            if decision_id in self.decisions:
                return False
            self.decisions.append(decision_id)
            del self.decisions[:-REMEMBERED_DECISIONS]
        day = at_ms // DAY_MS
        if day != self.day:
            if day < self.day:
                return True  # a late impression from a past day: today's counts are not its business
            self.day, self.today = day, {}
        if not self._same_session(session_id, at_ms):
            self.session_id, self.session = session_id, {}
        self.last_at = max(self.last_at, at_ms)
        self.today[offer_id] = self.today.get(offer_id, 0) + 1
        self.session[offer_id] = self.session.get(offer_id, 0) + 1
        return True

    def session_count(self, offer_id: str, *, now_ms: int, session_id: str | None = None) -> int:
        """Impressions of ``offer_id`` in the session the visitor is in at ``now_ms``."""
        return self.session.get(offer_id, 0) if self._same_session(session_id, now_ms) else 0

    def day_count(self, offer_id: str, *, now_ms: int) -> int:
        """Impressions of ``offer_id`` on the UTC day of ``now_ms``."""
        return self.today.get(offer_id, 0) if now_ms // DAY_MS == self.day else 0

    def live(self, now_ms: int) -> bool:
        """Whether any count can still bind at ``now_ms`` (today's, or an ongoing session's)."""
        return self.last_at > 0 and (now_ms // DAY_MS == self.day or now_ms - self.last_at <= SESSION_GAP_MS)

    def _same_session(self, session_id: str | None, at_ms: int) -> bool:
        if session_id is not None and self.session_id is not None:
            return session_id == self.session_id
        return self.last_at > 0 and at_ms - self.last_at <= SESSION_GAP_MS

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": CAPS_SCHEMA_VERSION,
            "session_id": self.session_id,
            "day": self.day,
            "last": self.last_at,
            "session": self.session,
            "today": self.today,
            "decisions": self.decisions,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImpressionCounts:
        if data.get("v") != CAPS_SCHEMA_VERSION:
            raise ValueError(
                f"impression counts layout version {data.get('v')!r} is not {CAPS_SCHEMA_VERSION}; "
                "drop the stored counts (caps restart from zero) or migrate them"
            )
        return cls(
            session_id=data["session_id"],
            day=int(data["day"]),
            last_at=int(data["last"]),
            session={k: int(v) for k, v in data["session"].items()},
            today={k: int(v) for k, v in data["today"].items()},
            decisions=list(data["decisions"]),
        )
