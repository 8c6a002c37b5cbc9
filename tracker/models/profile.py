"""A visitor's live profile and how one event changes it.

Pure logic: the stream worker loads a profile from Redis, calls
:func:`apply_event` and writes it back; the offer API loads it and reads
:func:`Profile.interests_at`. The profile remembers the ids of the last few
events it absorbed, so a redelivered event is recognised and skipped in the same
write that would have counted it: the dedupe memory and the counts can never
disagree.

Interest decays exponentially: a category's score halves every
``half_life_seconds`` without activity. Scores are stored with the time they
were last updated and decayed lazily on read, so an idle profile costs nothing.

>>> from tracker.schema import parse_event
>>> p = Profile.new("shop", "visitor-0001")
>>> ev = parse_event({"event_id": "7a1f0c3e-95b4-4c8e-9a55-0c6b6f2b9d10", "type": "product_view",
...                   "ts": 1_763_900_000_000, "site_id": "shop", "visitor_id": "visitor-0001",
...                   "product_id": "sku-1", "category": "shoes"})
>>> apply_event(p, ev, received_at=1_763_900_000_100, half_life_seconds=3600, dedupe_window=8)
True
>>> apply_event(p, ev, received_at=1_763_900_000_200, half_life_seconds=3600, dedupe_window=8)
False
>>> round(p.interests_at(1_763_900_000_000 + 3_600_000, half_life_seconds=3600)["shoes"], 3)
1.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tracker.schema import Event, EventType

PROFILE_SCHEMA_VERSION = 1

# How strongly each kind of event says "this visitor is interested in this category".
INTEREST_WEIGHTS: dict[EventType, float] = {
    EventType.PAGE_VIEW: 1.0,
    EventType.PRODUCT_VIEW: 3.0,
    EventType.ADD_TO_CART: 6.0,
    EventType.REMOVE_FROM_CART: -3.0,
    EventType.PURCHASE: 10.0,
    EventType.OFFER_CLICK: 2.0,
}

# Interests below this after decay are forgotten, so profiles stay small.
FORGET_BELOW = 0.05
MAX_CATEGORIES = 32


def decay(score: float, elapsed_ms: float, half_life_seconds: float) -> float:
    """``score`` after ``elapsed_ms`` of exponential decay.

    >>> decay(8.0, 7_200_000, half_life_seconds=3600)
    2.0
    """
    if elapsed_ms <= 0:
        return score
    return score * math.pow(2.0, -(elapsed_ms / 1000.0) / half_life_seconds)


@dataclass(slots=True)
class Interest:
    """A decayed score and the event time it was last brought up to date at."""

    score: float
    at: int


@dataclass(slots=True)
class Profile:
    """Everything the offer API needs to know about one visitor."""

    site_id: str
    visitor_id: str
    first_seen: int = 0
    last_seen: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    interests: dict[str, Interest] = field(default_factory=dict)
    recent_event_ids: list[str] = field(default_factory=list)

    @classmethod
    def new(cls, site_id: str, visitor_id: str) -> Profile:
        return cls(site_id=site_id, visitor_id=visitor_id)

    @property
    def events_seen(self) -> int:
        return sum(self.counts.values())

    def interests_at(self, now_ms: int, *, half_life_seconds: float) -> dict[str, float]:
        """Each category's interest decayed to ``now_ms``, strongest first."""
        decayed = {
            category: decay(interest.score, now_ms - interest.at, half_life_seconds)
            for category, interest in self.interests.items()
        }
        return dict(sorted(decayed.items(), key=lambda item: item[1], reverse=True))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for storage (``v`` is the layout version)."""
        return {
            "v": PROFILE_SCHEMA_VERSION,
            "site": self.site_id,
            "visitor": self.visitor_id,
            "first": self.first_seen,
            "last": self.last_seen,
            "counts": self.counts,
            "interests": {c: [round(i.score, 4), i.at] for c, i in self.interests.items()},
            "ids": self.recent_event_ids,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        version = data.get("v")
        if version != PROFILE_SCHEMA_VERSION:
            raise ValueError(
                f"profile layout version {version!r} is not {PROFILE_SCHEMA_VERSION}; "
                "migrate stored profiles or replay the events topic to rebuild them"
            )
        return cls(
            site_id=data["site"],
            visitor_id=data["visitor"],
            first_seen=data["first"],
            last_seen=data["last"],
            counts=dict(data["counts"]),
            interests={c: Interest(float(s), int(at)) for c, (s, at) in data["interests"].items()},
            recent_event_ids=list(data["ids"]),
        )


def event_category(event: Event) -> str | None:
    """The product category an event speaks of, if any."""
    category = getattr(event, "category", None)
    if category is None and event.type == EventType.PURCHASE:
        categories = [line.category for line in event.items if line.category]
        return categories[0] if categories else None
    return category


def dedupe_token(event: Event) -> str:
    """A compact form of the event id kept in the profile (12 hex chars = 48 bits)."""
    return event.event_id.hex[:12]


def apply_event(
    profile: Profile,
    event: Event,
    *,
    received_at: int,
    half_life_seconds: float,
    dedupe_window: int,
) -> bool:
    """Fold one event into ``profile``; return False (and change nothing) for a duplicate.

    Decay is measured in event time (the client timestamp, clamped to the
    server receive time so a skewed clock cannot inflate a score).
    """
    token = dedupe_token(event)
    if token in profile.recent_event_ids:
        return False
    profile.recent_event_ids.append(token)
    del profile.recent_event_ids[:-dedupe_window]

    at = min(event.ts, received_at)
    if profile.first_seen == 0 or at < profile.first_seen:
        profile.first_seen = at
    profile.last_seen = max(profile.last_seen, at)
    profile.counts[event.type.value] = profile.counts.get(event.type.value, 0) + 1

    weight = INTEREST_WEIGHTS.get(event.type, 0.0)
    category = event_category(event)
    if weight and category:
        _add_interest(profile, category, weight, at, half_life_seconds)
    return True


def _add_interest(profile: Profile, category: str, weight: float, at: int, half_life_seconds: float) -> None:
    current = profile.interests.get(category)
    if current is None:
        base = 0.0
    elif at >= current.at:
        base = decay(current.score, at - current.at, half_life_seconds)
    else:
        # An event older than the stored score: decay the new weight back instead.
        weight = decay(weight, current.at - at, half_life_seconds)
        base, at = current.score, current.at
    profile.interests[category] = Interest(max(0.0, base + weight), at)
    _forget_faint_interests(profile, at, half_life_seconds)


def _forget_faint_interests(profile: Profile, now_ms: int, half_life_seconds: float) -> None:
    decayed = profile.interests_at(now_ms, half_life_seconds=half_life_seconds)
    keep = [c for c, score in decayed.items() if score >= FORGET_BELOW][:MAX_CATEGORIES]
    if len(keep) != len(profile.interests):
        profile.interests = {c: profile.interests[c] for c in keep}
