"""What the decision knows about the visitor now, and the sparse features the click model reads.

:class:`DecisionContext` is everything the offer API knows at request time:
profile interests (decayed, per category), the visitor's segment, whether
they are returning, their device class, the page and the session so far. The
API builds it from the profile and the request; the decision log stores it
(:meth:`DecisionContext.to_dict`) so that a candidate policy can be replayed
offline on logged contexts.

Features are named (not hashed) so that the explain endpoint can show them,
and few (about fifteen per offer) so that scoring an offer costs a couple of
microseconds:

- ``<offer>``: the offer's own click rate (popularity);
- ``<offer>|seg=<k>``, ``|dev=<d>``, ``|new`` or ``|ret``, ``|pcat=<category>``:
  the offer crossed with one fact about the visitor (one-hot, value 1);
- ``c=<category>|page=<type>``, ``|cart=<bucket>``, ``|depth=<bucket>``: the
  weaker signals (page type, cart value, session depth) crossed with the
  offer's *categories* rather than the offer itself (``c=-`` for offers
  without one), so that each weight pools the data of several offers.
  Crossed per offer, they mostly taught the model noise (measured with
  ``bench/learning_curve.py``);
- ``<offer>|top=<category>``: the offer crossed with the visitor's strongest
  interest (one-hot: "people who mostly browse X click this");
- ``<offer>|int=<category>``: the offer crossed with the visitor's interest
  level in each of their top :data:`TOP_INTERESTS` categories;
- ``match=interest`` and ``match=page``: offer-agnostic, how much the
  visitor likes the offer's own categories, and whether the page is about one
  of them. Shared by all offers, so a new offer starts with what every other
  offer taught. (No offer id contains ``=`` or ``|``, so no name collides.)

An interest *level* is ``score / (total + INTEREST_PRIOR)``: the share of the
visitor's attention, shrunk towards 0 while the profile is thin (a single page
view says less than twenty product views). Levels are in ``[0, 1)``.

>>> from tracker.models.catalogue import Offer
>>> ctx = DecisionContext(interests={"shoes": 9.0, "books": 3.0}, segment=2, device="mobile",
...                       page_type="category", page_category="shoes")
>>> run = Offer(id="run", slots=["home-hero"], categories=["shoes"], title="Run", link="/")
>>> x = offer_features(context_parts(ctx), run)
>>> x["run|seg=2"], x["run|int=shoes"], x["match=interest"], x["match=page"]
(1.0, 0.6, 0.6, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from tracker.models.catalogue import Offer

FEATURES_VERSION = 1

# How many of the visitor's strongest interests are crossed with each offer.
TOP_INTERESTS = 3
# Interest (in profile points: a product view is 3) that a profile needs before its levels count fully.
INTEREST_PRIOR = 3.0
# Upper bounds of the cart-value buckets (currency units); above the last: the last bucket + "+".
CART_BUCKETS = (0.0, 50.0, 150.0)
# Upper bounds of the session page-view buckets.
DEPTH_BUCKETS = (1, 3, 7)
# The category an offer without any stands for in the coarse features (``c=-|...``).
UNCATEGORISED = "-"
# The offer-agnostic features (see the module docstring).
MATCH_INTEREST = "match=interest"
MATCH_PAGE = "match=page"
# A session with no event for this long is over (the snippet's and the stream worker's rule).
SESSION_GAP_MS = 30 * 60 * 1000


class SessionLike(Protocol):
    id: str
    last: int
    page_views: int


class ProfileLike(Protocol):
    """What :func:`context_from_profile` reads (``tracker.models.profile.Profile`` has it)."""

    segment: int | None
    sessions: int
    session: SessionLike | None

    def interests_at(self, now_ms: int, *, half_life_seconds: float) -> dict[str, float]: ...


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """What the offer API knows about the visitor and the page when it decides.

    Every field is optional: an empty context is a brand-new visitor on an
    unknown page, who gets the popularity prior.
    """

    interests: Mapping[str, float] = field(default_factory=dict)
    segment: int | None = None
    is_returning: bool = False
    device: str | None = None
    page_type: str | None = None
    page_path: str | None = None
    page_category: str | None = None
    cart_value: float = 0.0
    session_page_views: int = 0
    session_id: str | None = None

    @property
    def has_profile(self) -> bool:
        """Whether anything visitor-specific is known (interests or a segment)."""
        return bool(self.interests) or self.segment is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the decision log; :meth:`from_dict` reads it back."""
        return {
            "interests": {c: round(s, 4) for c, s in self.interests.items()},
            "segment": self.segment,
            "returning": self.is_returning,
            "device": self.device,
            "page_type": self.page_type,
            "page_path": self.page_path,
            "page_category": self.page_category,
            "cart_value": self.cart_value,
            "session_page_views": self.session_page_views,
            "session_id": self.session_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecisionContext:
        return cls(
            interests={str(c): float(s) for c, s in (data.get("interests") or {}).items()},
            segment=data.get("segment"),
            is_returning=bool(data.get("returning", False)),
            device=data.get("device"),
            page_type=data.get("page_type"),
            page_path=data.get("page_path"),
            page_category=data.get("page_category"),
            cart_value=float(data.get("cart_value") or 0.0),
            session_page_views=int(data.get("session_page_views") or 0),
            session_id=data.get("session_id"),
        )


def context_from_profile(
    profile: ProfileLike | None,
    *,
    now_ms: int,
    half_life_seconds: float,
    device: str | None = None,
    page_type: str | None = None,
    page_path: str | None = None,
    page_category: str | None = None,
    cart_value: float = 0.0,
) -> DecisionContext:
    """The context the offer API decides with: the stored profile plus what the request says.

    ``profile`` None is a visitor never seen (the empty context). A visitor is
    returning when they started a session before the current one; the
    current session is the profile's last one if it had an event in the last
    30 minutes (else the request starts a new one, not yet in the profile).
    """
    if profile is None:
        return DecisionContext(
            device=device, page_type=page_type, page_path=page_path, page_category=page_category,
            cart_value=cart_value,
        )  # fmt: skip
    session = profile.session
    ongoing = session is not None and now_ms - session.last <= SESSION_GAP_MS
    return DecisionContext(
        interests=profile.interests_at(now_ms, half_life_seconds=half_life_seconds),
        segment=profile.segment,
        is_returning=profile.sessions > 1 or (profile.sessions >= 1 and not ongoing),
        device=device,
        page_type=page_type,
        page_path=page_path,
        page_category=page_category,
        cart_value=cart_value,
        session_page_views=session.page_views if ongoing and session is not None else 0,
        session_id=session.id if ongoing and session is not None else None,
    )


@dataclass(frozen=True, slots=True)
class ContextParts:
    """The offer-independent half of the features, computed once per request."""

    # (suffix, value) pairs crossed with every offer: "seg=2", "int=shoes", ...
    crosses: tuple[tuple[str, float], ...]
    # suffixes crossed with each of the offer's categories: "page=product", "cart=0", ...
    coarse: tuple[str, ...]
    # Interest level per category, for the shared ``match=interest`` feature.
    levels: Mapping[str, float]
    page_category: str | None
    # The visitor's strongest interest (None: no interests yet): half of the exploration tally's key.
    top: str | None = None


def interest_levels(interests: Mapping[str, float]) -> dict[str, float]:
    """Each category's share of the visitor's interest, shrunk while the profile is thin.

    >>> interest_levels({"shoes": 6.0, "books": 3.0, "garden": -1.0})
    {'shoes': 0.5, 'books': 0.25}
    """
    positive = {c: s for c, s in interests.items() if s > 0}
    total = sum(positive.values()) + INTEREST_PRIOR
    return {c: s / total for c, s in positive.items()}


def context_parts(ctx: DecisionContext) -> ContextParts:
    """Precompute the context half of the features (one call per request, not per offer)."""
    levels = interest_levels(ctx.interests)
    crosses: list[tuple[str, float]] = []
    if ctx.segment is not None:
        crosses.append((f"seg={ctx.segment}", 1.0))
    if ctx.device:
        crosses.append((f"dev={ctx.device}", 1.0))
    crosses.append(("ret" if ctx.is_returning else "new", 1.0))
    if ctx.page_category:
        crosses.append((f"pcat={ctx.page_category}", 1.0))
    coarse = [
        f"cart={_bucket(ctx.cart_value, CART_BUCKETS)}",
        f"depth={_bucket(ctx.session_page_views, DEPTH_BUCKETS)}",
    ]
    if ctx.page_type:
        coarse.insert(0, f"page={ctx.page_type}")
    # Strongest first; ties by name so the feature order (and float sums) never depend on dict order.
    top = sorted(levels.items(), key=lambda item: (-item[1], item[0]))[:TOP_INTERESTS]
    if top:
        crosses.append((f"top={top[0][0]}", 1.0))
    crosses.extend((f"int={category}", level) for category, level in top)
    return ContextParts(
        crosses=tuple(crosses),
        coarse=tuple(coarse),
        levels=levels,
        page_category=ctx.page_category,
        top=top[0][0] if top else None,
    )


def offer_features(parts: ContextParts, offer: Offer) -> dict[str, float]:
    """The sparse feature dict of one (visitor context, offer) pair."""
    prefix = offer.id + "|"  # cross_name(offer.id, suffix), inlined: this runs per offer per request
    x = {offer.id: 1.0}
    for suffix, value in parts.crosses:
        x[prefix + suffix] = value
    categories = offer.categories or (UNCATEGORISED,)
    share = 1.0 / len(categories)
    for category in categories:
        for name in _coarse_names(category, parts.coarse):
            x[name] = share
    if offer.categories:
        levels = parts.levels
        if levels:
            # A plain loop, not sum() over a generator: this runs for every offer on every request.
            match = 0.0
            for category in offer.categories:
                match += levels.get(category, 0.0)
            if match:
                x[MATCH_INTEREST] = match
        if parts.page_category is not None and parts.page_category in offer.categories:
            x[MATCH_PAGE] = 1.0
    return x


def tally_key(offer_id: str, top: str | None) -> str:
    """The key under which the click model tallies how ``offer_id`` did with visitors whose
    strongest interest is ``top`` (the policy's exploration asks it; see ``ClickModel.ceiling``).

    >>> tally_key("run", "shoes"), tally_key("run", None)
    ('run|top=shoes', 'run|top=-')
    """
    return f"{offer_id}|top={top or '-'}"


def tally_key_of(x: Mapping[str, float], offer_id: str) -> str:
    """:func:`tally_key` read back from the features :func:`offer_features` built for ``offer_id``."""
    prefix = offer_id + "|top="
    for name in x:
        if name.startswith(prefix):
            return name
    return prefix + "-"


def features_for(ctx: DecisionContext, offer: Offer) -> dict[str, float]:
    """Shortcut for one offer: ``offer_features(context_parts(ctx), offer)``."""
    return offer_features(context_parts(ctx), offer)


@lru_cache(maxsize=4096)
def _coarse_names(category: str, suffixes: tuple[str, ...]) -> tuple[str, ...]:
    # The same few names on every request: build the strings once.
    return tuple(coarse_name(category, suffix) for suffix in suffixes)


def cross_name(offer_id: str, suffix: str) -> str:
    """The feature of ``offer_id`` crossed with one fact about the visitor (``run|seg=2``)."""
    return f"{offer_id}|{suffix}"


def coarse_name(category: str, suffix: str) -> str:
    """The feature of an offer's ``category`` crossed with a weaker signal (``c=shoes|cart=0``)."""
    return f"c={category}|{suffix}"


def _bucket(value: float, bounds: tuple[float, ...]) -> str:
    for bound in bounds:
        if value <= bound:
            return f"{bound:g}"
    return f"{bounds[-1]:g}+"
