"""A visitor's live profile and how one event changes it.

Pure logic. The stream worker folds each event into the visitor's profile with
:func:`fold_event` (kept in its Faust table, see
:mod:`tracker.models.visitor_state`) and writes :meth:`Profile.to_dict` to
Redis; the offer API reads it back with :meth:`Profile.from_dict` and asks
:meth:`Profile.interests_at`.

What a profile holds:

- ``counts`` of events by type, ``first``/``last`` seen (event time, ms);
- time-decayed **interest** per category and per product: each event adds a
  weight (:data:`INTEREST_WEIGHTS`) that halves every half-life without
  activity. Scores are decayed lazily (stored with the time they were last
  brought up to date), so an idle profile costs nothing;
- **RFM**: orders, revenue, time of the last order;
- **sessions** started and a summary of the current one
  (:mod:`tracker.models.sessions`);
- an **engagement** score, decayed like interest: points for pages and
  products seen (depth), 1 per 30 s of engaged time reported by page pings
  (time), 3 for each return visit (returns), more for carts and purchases;
- the last offers shown and clicked (``offer_impression``/``offer_click``);
- the visitor's **segment**, assigned by the worker from the current segment
  model (:mod:`tracker.models.segments`).

Everything here is a deterministic function of the event sequence: time is
event time (the client timestamp clamped to the server receive time), never
the wall clock, so a replay after a crash rebuilds exactly the same profile.
The segment is the one exception (it depends on which model was current) and
is assigned outside :func:`fold_event`.

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
from operator import itemgetter
from typing import Any

from tracker.models.sessions import Session, SessionRules
from tracker.schema import Event, EventType, event_field

# Layout of the JSON stored in Redis. 1: counts, interests {c: [score, at]}, ids.
# 2: adds products, rfm, sessions, engagement, session, offers, segment; scores decayed to
#    "last"; event ids no longer stored in Redis (they live in the worker's table).
PROFILE_SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)

# How strongly each kind of event says "this visitor is interested in this category / product".
INTEREST_WEIGHTS: dict[EventType, float] = {
    EventType.PAGE_VIEW: 1.0,
    EventType.PRODUCT_VIEW: 3.0,
    EventType.ADD_TO_CART: 6.0,
    EventType.REMOVE_FROM_CART: -3.0,
    EventType.PURCHASE: 10.0,
    EventType.OFFER_CLICK: 2.0,
}
# Engagement points per event (page pings add ENGAGED_SECONDS_PER_POINT instead).
ENGAGEMENT_POINTS: dict[EventType, float] = {
    EventType.PAGE_VIEW: 1.0,
    EventType.PRODUCT_VIEW: 1.0,
    EventType.SEARCH: 1.0,
    EventType.LINK_CLICK: 0.5,
    EventType.ADD_TO_CART: 2.0,
    EventType.PURCHASE: 5.0,
    EventType.OFFER_CLICK: 1.0,
}
ENGAGED_SECONDS_PER_POINT = 30.0
RETURN_VISIT_POINTS = 3.0

# The ``counts`` key of each type: ``EventType.value`` is a Python-level enum property, and this
# lookup is made once per event.
COUNT_KEYS: dict[EventType, str] = {kind: kind.value for kind in EventType}

# Interests below this after decay are forgotten, so profiles stay small.
FORGET_BELOW = 0.05
MAX_CATEGORIES = 16
MAX_PRODUCTS = 6
MAX_OFFERS = 3
# Decimal places kept in Redis (the worker's table keeps full precision).
STORED_DECIMALS = 2


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


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """The knobs of :func:`fold_event` (from ``TRACKER_*`` settings in the worker)."""

    half_life_seconds: float = 3 * 24 * 3600.0
    product_half_life_seconds: float = 24 * 3600.0
    engagement_half_life_seconds: float = 14 * 24 * 3600.0
    dedupe_window: int = 64
    sessions: SessionRules = field(default_factory=SessionRules)


@dataclass(slots=True)
class Profile:
    """Everything the offer API needs to know about one visitor."""

    site_id: str
    visitor_id: str
    first_seen: int = 0
    last_seen: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    interests: dict[str, Interest] = field(default_factory=dict)
    products: dict[str, Interest] = field(default_factory=dict)
    orders: int = 0
    revenue: float = 0.0
    last_order: int = 0
    sessions: int = 0
    engagement: Interest = field(default_factory=lambda: Interest(0.0, 0))
    session: Session | None = None
    offers_shown: list[list[Any]] = field(default_factory=list)
    offers_clicked: list[list[Any]] = field(default_factory=list)
    segment: int | None = None
    segment_version: int | None = None
    # Tokens of the last events folded in (dedupe); kept by the worker, not written to Redis.
    recent_event_ids: list[str] = field(default_factory=list)

    @classmethod
    def new(cls, site_id: str, visitor_id: str) -> Profile:
        return cls(site_id=site_id, visitor_id=visitor_id)

    @property
    def events_seen(self) -> int:
        return sum(self.counts.values())

    def interests_at(self, now_ms: int, *, half_life_seconds: float) -> dict[str, float]:
        """Each category's interest decayed to ``now_ms``, strongest first."""
        return _decayed(self.interests, now_ms, half_life_seconds)

    def interest_items_at(self, now_ms: int, *, half_life_seconds: float) -> list[tuple[str, float]]:
        """``(category, interest decayed to now_ms)``, strongest first: :meth:`interests_at`
        without building the dict (for callers on the worker's per-profile path)."""
        return _decayed_items(self.interests, now_ms, half_life_seconds)

    def products_at(self, now_ms: int, *, half_life_seconds: float) -> dict[str, float]:
        """Each product's interest decayed to ``now_ms``, strongest first."""
        return _decayed(self.products, now_ms, half_life_seconds)

    def engagement_at(self, now_ms: int, *, half_life_seconds: float) -> float:
        return decay(self.engagement.score, now_ms - self.engagement.at, half_life_seconds)

    # --- Redis layout (what readers see) -------------------------------------------------

    def to_dict(self, config: ProfileConfig | None = None) -> dict[str, Any]:
        """The JSON stored in Redis (layout ``v`` 2, documented in ``docs/ARCHITECTURE.md``).

        Scores are decayed to ``last`` and rounded, faint ones left out; empty parts are
        omitted. A function of the profile alone, so equal profiles store equal bytes.
        """
        cfg = config or ProfileConfig()
        last = self.last_seen
        # Site and visitor are in the key: not repeated in the value (the budget is 1 KB).
        data: dict[str, Any] = {
            "v": PROFILE_SCHEMA_VERSION,
            "first": self.first_seen,
            "last": last,
            "counts": self.counts,
            "interests": _stored_scores(self.interests, last, cfg.half_life_seconds),
        }
        products = _stored_scores(self.products, last, cfg.product_half_life_seconds)
        if products:
            data["products"] = products
        if self.orders:
            data["rfm"] = {"orders": self.orders, "revenue": self.revenue, "last_order": self.last_order}
        data["sessions"] = self.sessions
        data["engagement"] = round(
            self.engagement_at(last, half_life_seconds=cfg.engagement_half_life_seconds), STORED_DECIMALS
        )
        if self.session is not None:
            data["session"] = self.session.summary()
        if self.offers_shown or self.offers_clicked:
            data["offers"] = {"shown": self.offers_shown, "clicked": self.offers_clicked}
        if self.segment is not None:
            data["segment"] = self.segment
            data["segment_v"] = self.segment_version
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Read a stored profile (layout 1 or 2); raise ValueError for any other layout.

        Layout 2 does not repeat the site and visitor (they are in the key): ``site_id`` and
        ``visitor_id`` are then empty."""
        version = data.get("v")
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"profile layout version {version!r} is not one of {READABLE_VERSIONS}; "
                "migrate stored profiles or replay the events topic to rebuild them"
            )
        last = int(data["last"])
        if version == 1:
            interests = {c: Interest(float(s), int(at)) for c, (s, at) in data["interests"].items()}
        else:
            interests = {c: Interest(float(s), last) for c, s in data["interests"].items()}
        rfm = data.get("rfm") or {}
        summary = data.get("session")
        return cls(
            site_id=data.get("site", ""),
            visitor_id=data.get("visitor", ""),
            first_seen=int(data["first"]),
            last_seen=last,
            counts=dict(data["counts"]),
            interests=interests,
            products={p: Interest(float(s), last) for p, s in (data.get("products") or {}).items()},
            orders=int(rfm.get("orders", 0)),
            revenue=float(rfm.get("revenue", 0.0)),
            last_order=int(rfm.get("last_order", 0)),
            sessions=int(data.get("sessions", 0)),
            engagement=Interest(float(data.get("engagement", 0.0)), last),
            session=_session_from_summary(summary) if summary else None,
            offers_shown=[list(o) for o in (data.get("offers") or {}).get("shown", [])],
            offers_clicked=[list(o) for o in (data.get("offers") or {}).get("clicked", [])],
            segment=data.get("segment"),
            segment_version=data.get("segment_v"),
            recent_event_ids=list(data.get("ids", [])),
        )

    # --- worker state (lossless) ---------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything, exactly (floats unrounded, event ids kept): the worker's table value."""
        return {
            "site": self.site_id,
            "visitor": self.visitor_id,
            "first": self.first_seen,
            "last": self.last_seen,
            "counts": self.counts,
            "interests": {c: [i.score, i.at] for c, i in self.interests.items()},
            "products": {p: [i.score, i.at] for p, i in self.products.items()},
            "rfm": [self.orders, self.revenue, self.last_order],
            "sessions": self.sessions,
            "engagement": [self.engagement.score, self.engagement.at],
            "session": self.session.to_state() if self.session else None,
            "shown": self.offers_shown,
            "clicked": self.offers_clicked,
            "segment": [self.segment, self.segment_version],
            "ids": self.recent_event_ids,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Profile:
        orders, revenue, last_order = data["rfm"]
        segment, segment_version = data["segment"]
        return cls(
            site_id=data["site"],
            visitor_id=data["visitor"],
            first_seen=data["first"],
            last_seen=data["last"],
            counts=dict(data["counts"]),
            interests={c: Interest(s, at) for c, (s, at) in data["interests"].items()},
            products={p: Interest(s, at) for p, (s, at) in data["products"].items()},
            orders=orders,
            revenue=revenue,
            last_order=last_order,
            sessions=data["sessions"],
            engagement=Interest(*data["engagement"]),
            session=Session.from_state(data["session"]) if data["session"] else None,
            offers_shown=[list(o) for o in data["shown"]],
            offers_clicked=[list(o) for o in data["clicked"]],
            segment=segment,
            segment_version=segment_version,
            recent_event_ids=list(data["ids"]),
        )


def _decayed_scores(
    scores: dict[str, Interest], now_ms: int, half_life_seconds: float
) -> list[tuple[str, float]]:
    """``(key, score decayed to now_ms)`` in insertion order.

    :func:`decay` written out (same arithmetic): this runs for every score of every changed
    profile (the Redis projection) and of every profile gaining a key, and the function call
    per score was a third of its cost.
    """
    pow_ = math.pow
    return [
        (
            key,
            i.score
            if now_ms <= i.at
            else i.score * pow_(2.0, -((now_ms - i.at) / 1000.0) / half_life_seconds),
        )
        for key, i in scores.items()
    ]


def _decayed_items(
    scores: dict[str, Interest], now_ms: int, half_life_seconds: float
) -> list[tuple[str, float]]:
    """:func:`_decayed_scores` strongest first (equal scores in insertion order)."""
    items = _decayed_scores(scores, now_ms, half_life_seconds)
    items.sort(key=_SCORE, reverse=True)
    return items


_SCORE = itemgetter(1)


def _decayed(scores: dict[str, Interest], now_ms: int, half_life_seconds: float) -> dict[str, float]:
    return dict(_decayed_items(scores, now_ms, half_life_seconds))


def _stored_scores(scores: dict[str, Interest], last: int, half_life_seconds: float) -> dict[str, float]:
    return {
        key: round(score, STORED_DECIMALS)
        for key, score in _decayed_items(scores, last, half_life_seconds)
        if score >= FORGET_BELOW
    }


def _session_from_summary(summary: dict[str, Any]) -> Session:
    """The part of a session the Redis layout keeps (readers only need the summary)."""
    return Session(
        id=summary["id"],
        start=int(summary["start"]),
        last=int(summary["last"]),
        events=int(summary.get("events", 0)),
        page_views=int(summary.get("pages", 0)),
        engaged_ms=int(summary.get("engaged_s", 0)) * 1000,
        referrer_class=summary.get("source", "direct"),
    )


@dataclass(slots=True)
class Folded:
    """What :func:`fold_event` did: whether the event counted, and the session it closed."""

    applied: bool
    # "first", "gap" or "source" when this event started a new session; "late" when it was too
    # old to join any; None when it continued the current one.
    boundary: str | None = None
    closed: Session | None = None


def event_category(event: Event) -> str | None:
    """The product category an event speaks of, if any (a purchase: its first line's)."""
    category = event_field(event, "category")
    if category is None and event.type == EventType.PURCHASE:
        categories = [line.category for line in event.items if line.category]
        return categories[0] if categories else None
    return category


def dedupe_token(event: Event) -> str:
    """A compact form of the event id kept in the profile (12 hex chars = 48 bits)."""
    return event.event_id.hex[:12]


def fold_event(profile: Profile, event: Event, *, received_at: int, config: ProfileConfig) -> Folded:
    """Fold one event into ``profile``; a duplicate (by event id) changes nothing.

    Time is event time: the client timestamp, clamped to the server receive time so
    that a skewed clock cannot inflate a score or push a session into the future.
    """
    token = dedupe_token(event)
    if token in profile.recent_event_ids:
        return Folded(applied=False)
    profile.recent_event_ids.append(token)
    del profile.recent_event_ids[: -config.dedupe_window]

    at = min(event.ts, received_at)
    if profile.first_seen == 0 or at < profile.first_seen:
        profile.first_seen = at
    profile.last_seen = max(profile.last_seen, at)
    kind = event.type
    count_key = COUNT_KEYS[kind]
    profile.counts[count_key] = profile.counts.get(count_key, 0) + 1

    folded, engaged_seconds = _fold_session(profile, event, at, token, config)
    points = ENGAGEMENT_POINTS.get(kind, 0.0) + engaged_seconds / ENGAGED_SECONDS_PER_POINT
    if folded.boundary in ("gap", "source"):
        points += RETURN_VISIT_POINTS
    if points:
        profile.engagement = _bump(profile.engagement, points, at, config.engagement_half_life_seconds)

    weight = INTEREST_WEIGHTS.get(kind, 0.0)
    if weight:
        if kind == EventType.PURCHASE:
            categories = list(dict.fromkeys(line.category for line in event.items if line.category))
            products = list(dict.fromkeys(line.product_id for line in event.items))
        else:
            category = event_field(event, "category")
            categories = [category] if category else []
            product = event_field(event, "product_id")
            products = [product] if product else []
        for category in categories[:MAX_CATEGORIES]:
            _add(profile.interests, category, weight, at, config.half_life_seconds, MAX_CATEGORIES)
        for product in products[:MAX_PRODUCTS]:
            _add(profile.products, product, weight, at, config.product_half_life_seconds, MAX_PRODUCTS)

    if kind == EventType.PURCHASE:
        profile.orders += 1
        profile.revenue = round(profile.revenue + event.value, 2)
        profile.last_order = max(profile.last_order, at)
    elif kind == EventType.OFFER_IMPRESSION:
        _remember_offer(profile.offers_shown, event.offer_id, at)
    elif kind == EventType.OFFER_CLICK:
        _remember_offer(profile.offers_clicked, event.offer_id, at)
    return folded


def _fold_session(
    profile: Profile, event: Event, at: int, token: str, config: ProfileConfig
) -> tuple[Folded, float]:
    """Place the event in a session; also return the engaged seconds the event added."""
    boundary = config.sessions.boundary(profile.session, event, at)
    folded = Folded(applied=True, boundary=boundary)
    if boundary == "late":
        return folded, 0.0
    if boundary is not None:
        folded.closed = profile.session
        profile.session = Session.begin(token, event, at)
        profile.sessions += 1
    session = profile.session
    assert session is not None
    engaged_before = session.engaged_ms
    session.add(event, at)
    return folded, (session.engaged_ms - engaged_before) / 1000.0


def _bump(current: Interest, points: float, at: int, half_life_seconds: float) -> Interest:
    if at >= current.at:
        return Interest(max(0.0, decay(current.score, at - current.at, half_life_seconds) + points), at)
    # An event older than the stored score: decay its points back instead.
    return Interest(max(0.0, current.score + decay(points, current.at - at, half_life_seconds)), current.at)


def _add(
    scores: dict[str, Interest], key: str, weight: float, at: int, half_life_seconds: float, limit: int
) -> None:
    current = scores.get(key)
    if current is None:
        scores[key] = Interest(max(0.0, weight), at)
        _forget_faint(scores, at, half_life_seconds, limit)
    else:
        scores[key] = _bump(current, weight, at, half_life_seconds)


def _forget_faint(scores: dict[str, Interest], now_ms: int, half_life_seconds: float, limit: int) -> None:
    """Drop what has decayed below :data:`FORGET_BELOW` and keep the ``limit`` strongest."""
    if len(scores) <= limit:
        # Nothing to rank away: only the faint ones go, and they need no sorting to be found.
        faint = [
            key for key, score in _decayed_scores(scores, now_ms, half_life_seconds) if score < FORGET_BELOW
        ]
        for key in faint:
            del scores[key]
        return
    decayed = _decayed_items(scores, now_ms, half_life_seconds)
    keep = [key for key, score in decayed if score >= FORGET_BELOW][:limit]
    if len(keep) != len(scores):
        kept = set(keep)
        for key in [k for k in scores if k not in kept]:
            del scores[key]


def _remember_offer(offers: list[list[Any]], offer_id: str, at: int) -> None:
    """Most recent last; an offer seen again moves to the end with its new time."""
    for i, (seen, _) in enumerate(offers):
        if seen == offer_id:
            del offers[i]
            break
    offers.append([offer_id, at])
    del offers[:-MAX_OFFERS]


def apply_event(
    profile: Profile,
    event: Event,
    *,
    received_at: int,
    half_life_seconds: float,
    dedupe_window: int,
    config: ProfileConfig | None = None,
) -> bool:
    """Fold one event into ``profile``; return False (and change nothing) for a duplicate.

    The short form of :func:`fold_event` for callers that only need the profile
    (simulations, tests, benchmarks); ``config`` overrides the other settings.
    """
    if config is None:
        config = ProfileConfig(half_life_seconds=half_life_seconds, dedupe_window=dedupe_window)
    return fold_event(profile, event, received_at=received_at, config=config).applied
