"""Hard rules: which offers may be shown to this visitor on this page now, and why not the others.

Rules are checked in a fixed order and the first that fails is the reason
(what the explain endpoint shows). The model only ranks offers that pass
every rule: a click prediction can never override a marketer's rule.

>>> from tracker.models.catalogue import Offer
>>> from tracker.models.features import DecisionContext
>>> offer = Offer(id="big", slots=["cart"], title="Big", link="/", min_cart_value=100, devices=["desktop"])
>>> str(exclusion(offer, DecisionContext(device="mobile", cart_value=150.0), now_ms=None))
'device'
>>> str(exclusion(offer, DecisionContext(device="desktop", cart_value=50.0), now_ms=None))
'cart_below_min'
>>> exclusion(offer, DecisionContext(device="desktop", cart_value=150.0), now_ms=None) is None
True
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from tracker.models.caps import ImpressionCounts
from tracker.models.catalogue import Catalogue, Offer
from tracker.models.features import DecisionContext


class Exclusion(StrEnum):
    """Why an offer of the slot was not a candidate (machine-readable, shown by explain)."""

    DISABLED = "disabled"
    NOT_STARTED = "not_started"
    ENDED = "ended"
    AUDIENCE = "audience"
    DEVICE = "device"
    SEGMENT = "segment"
    PAGE = "page"
    CART_BELOW_MIN = "cart_below_min"
    CART_ABOVE_MAX = "cart_above_max"
    NO_INTEREST = "no_interest"
    CAP_SESSION = "cap_session"
    CAP_DAY = "cap_day"


def exclusion(
    offer: Offer,
    ctx: DecisionContext,
    *,
    now_ms: int | None,
    counts: ImpressionCounts | None = None,
) -> Exclusion | None:
    """The first rule ``offer`` fails for this visitor, or None if it may be shown.

    ``now_ms`` None ignores date windows; ``counts`` None ignores caps (no
    impression history known).
    """
    if not offer.enabled:
        return Exclusion.DISABLED
    if offer.dated and now_ms is not None:
        if offer.starts_at is not None and now_ms < _ms(offer.starts_at):
            return Exclusion.NOT_STARTED
        if offer.ends_at is not None and now_ms >= _ms(offer.ends_at):
            return Exclusion.ENDED
    if offer.audience != "all" and (offer.audience == "returning") != ctx.is_returning:
        return Exclusion.AUDIENCE
    if offer.devices and ctx.device not in offer.devices:
        return Exclusion.DEVICE
    if offer.segments and ctx.segment not in offer.segments:
        return Exclusion.SEGMENT
    if offer.pages and not offer.page_matches(ctx.page_path):
        return Exclusion.PAGE
    if offer.min_cart_value is not None and ctx.cart_value < offer.min_cart_value:
        return Exclusion.CART_BELOW_MIN
    if offer.max_cart_value is not None and ctx.cart_value > offer.max_cart_value:
        return Exclusion.CART_ABOVE_MAX
    if offer.require_interest and not _interested(offer, ctx):
        return Exclusion.NO_INTEREST
    if offer.caps is not None and counts is not None and now_ms is not None:
        caps = offer.caps
        if caps.per_session is not None and (
            counts.session_count(offer.id, now_ms=now_ms, session_id=ctx.session_id) >= caps.per_session
        ):
            return Exclusion.CAP_SESSION
        if caps.per_day is not None and counts.day_count(offer.id, now_ms=now_ms) >= caps.per_day:
            return Exclusion.CAP_DAY
    return None


def split_eligible(
    catalogue: Catalogue,
    slot: str,
    ctx: DecisionContext,
    *,
    now_ms: int | None,
    counts: ImpressionCounts | None = None,
) -> tuple[list[Offer], list[tuple[Offer, Exclusion]]]:
    """The slot's offers that pass every rule (catalogue order), and the others with their reason."""
    eligible: list[Offer] = []
    excluded: list[tuple[Offer, Exclusion]] = []
    for offer in catalogue.offers_for_slot(slot):
        reason = exclusion(offer, ctx, now_ms=now_ms, counts=counts)
        if reason is None:
            eligible.append(offer)
        else:
            excluded.append((offer, reason))
    return eligible, excluded


def _interested(offer: Offer, ctx: DecisionContext) -> bool:
    if ctx.page_category is not None and ctx.page_category in offer.categories:
        return True
    return any(ctx.interests.get(category, 0.0) > 0 for category in offer.categories)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
