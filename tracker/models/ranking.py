"""Which offer to show in a slot: relevance first, margin and priority only to break ties.

Relevance of an offer for a visitor is the sum of the visitor's decayed
interest in the offer's target categories. Offers are ranked lexicographically
by

1. relevance, compared at :data:`RELEVANCE_DECIMALS` decimals (finer
   differences are float noise, not a real preference);
2. margin: only between offers that are equally relevant, so a better-paying
   offer can never beat one the visitor cares more about;
3. priority;
4. offer id, so that the same inputs always give the same answer.

An offer is personalised only if its relevance is positive and reaches
``min_interest``; otherwise the slot's default is shown (highest priority,
then margin, then id). The policy is deterministic, so a logged decision's
propensity is 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracker.models.catalogue import Catalogue, Offer

RELEVANCE_DECIMALS = 6

REASON_DEFAULT = "default"
REASON_INTEREST_PREFIX = "interest:"


@dataclass(frozen=True, slots=True)
class Choice:
    """The offer to show, how relevant it was, and why it won.

    ``reason`` is machine-readable: ``interest:<category>`` (the offer's
    category the visitor cares most about) for a personalised choice,
    ``default`` otherwise. Callers may replace it with a more specific one
    (the offer API uses ``no_profile`` for visitors it has never seen).
    """

    offer: Offer
    score: float
    personalised: bool
    reason: str


def relevance(offer: Offer, interests: dict[str, float]) -> float:
    """The visitor's total interest in the categories ``offer`` targets.

    >>> from tracker.models.catalogue import Offer
    >>> offer = Offer(id="hike", slots=["home-hero"], categories=["outdoor", "shoes"],
    ...               title="Hike", link="/c/outdoor")
    >>> relevance(offer, {"shoes": 2.5, "outdoor": 1.0, "books": 9.0})
    3.5
    """
    return sum(interests.get(category, 0.0) for category in offer.categories)


def choose_default(catalogue: Catalogue, slot: str, *, now_ms: int | None = None) -> Choice | None:
    """The slot's non-personalised offer, or None if the slot has no live default."""
    defaults = [offer for offer in catalogue.offers_for_slot(slot) if offer.default and offer.live_at(now_ms)]
    if not defaults:
        return None
    best = min(defaults, key=lambda offer: (-offer.priority, -offer.margin, offer.id))
    return Choice(offer=best, score=0.0, personalised=False, reason=REASON_DEFAULT)


def choose_offer(
    catalogue: Catalogue,
    slot: str,
    interests: dict[str, float],
    *,
    min_interest: float,
    now_ms: int | None = None,
) -> Choice | None:
    """Pick the offer to show in ``slot`` for a visitor with these interests.

    Parameters
    ----------
    catalogue
        The offers to choose from.
    slot
        The placement being filled; an unknown slot gives None.
    interests
        Decayed interest per category, as from ``Profile.interests_at``.
    min_interest
        The relevance an offer needs to be shown as personalised.
    now_ms
        Current time in epoch milliseconds, to apply offers' date windows;
        None ignores them.

    Returns
    -------
    Choice or None
        The most relevant targeted offer; else the slot's default; else None.

    Examples
    --------
    >>> from tracker.models.catalogue import parse_catalogue
    >>> catalogue = parse_catalogue({"offers": [
    ...     {"id": "welcome", "slots": ["home-hero"], "title": "Welcome", "link": "/",
    ...      "default": True},
    ...     {"id": "run", "slots": ["home-hero"], "categories": ["shoes"], "title": "Run",
    ...      "link": "/c/shoes", "margin": 0.2},
    ...     {"id": "pan", "slots": ["home-hero"], "categories": ["kitchen"], "title": "Pan",
    ...      "link": "/c/kitchen", "margin": 0.9},
    ... ]})
    >>> choice = choose_offer(catalogue, "home-hero", {"shoes": 4.0, "kitchen": 3.0}, min_interest=0.5)
    >>> choice.offer.id, choice.reason, choice.score
    ('run', 'interest:shoes', 4.0)
    >>> choose_offer(catalogue, "home-hero", {"kitchen": 0.1}, min_interest=0.5).reason
    'default'
    """
    best: tuple[tuple[float, float, int], Offer] | None = None
    for offer in catalogue.offers_for_slot(slot):
        if not offer.targeted or not offer.live_at(now_ms):
            continue
        score = round(relevance(offer, interests), RELEVANCE_DECIMALS)
        if score <= 0.0 or score < min_interest:
            continue
        key = (score, offer.margin, offer.priority)
        # Strictly greater, or equal with a smaller id: the result never depends on catalogue order.
        if best is None or key > best[0] or (key == best[0] and offer.id < best[1].id):
            best = (key, offer)

    if best is None:
        return choose_default(catalogue, slot, now_ms=now_ms)
    (score, _, _), offer = best
    top_category = max(offer.categories, key=lambda category: (interests.get(category, 0.0), category))
    return Choice(offer=offer, score=score, personalised=True, reason=REASON_INTEREST_PREFIX + top_category)
