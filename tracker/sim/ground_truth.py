"""The hidden truth of the learning simulator: visitor types and how likely each clicks each offer.

Nothing here is visible to the policy under test. It sees what a real
deployment sees: profiles built from browsing events, a segment id, device,
page. The oracle baseline reads the truth directly.

Visitor types: one per category the slot's offers target. A type browses
its ``favourite`` category mostly and its ``second`` sometimes, and clicks

- offers about its favourite category often (``HIGH``), about its second
  category less (``MID``), other offers rarely (``LOW``);
- one *cross-sell* offer about an unrelated category very often (``CROSS``,
  above ``HIGH``). Nothing in the offer's categories gives it away: a rule
  that matches interests to categories misses it, a learner that crosses
  interests and segments with offers finds it. This is why the oracle beats
  rule-based ranking, and what the learner has to discover;
- default offers at a base rate, higher for new visitors (a welcome offer
  speaks to them).

Mobile visitors click everything ``MOBILE_FACTOR`` as often.

**Drift**: from impression ``drift_at`` on, every type's tastes change: its
old cross-sell falls to ``LOW``, its favourite-category offers fall to
``MID``, and another unrelated offer becomes its cross-sell (``CROSS``).
Browsing (and so the profile) does not change, so what the learner knew
about "visitors who browse shoes" is now wrong and has to be relearned.

>>> from tracker.models.catalogue import load_catalogue
>>> from tracker.settings import Settings
>>> truth = GroundTruth(load_catalogue(Settings().catalogue_path), "home-hero", seed=1, drift_at=100)
>>> t = truth.types[0]
>>> t.name, t.favourite
('books-lover', 'books')
>>> before = truth.p_click(t, "books-3-for-2", device="desktop", returning=True, impressions=0)
>>> after = truth.p_click(t, "books-3-for-2", device="desktop", returning=True, impressions=100)
>>> before > after
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tracker.models.catalogue import Catalogue

HIGH = (0.10, 0.14)
MID = (0.04, 0.06)
LOW = (0.005, 0.02)
CROSS = (0.16, 0.20)
DEFAULT_NEW = 0.05
DEFAULT_RETURNING = 0.02
MOBILE_FACTOR = 0.8


@dataclass(frozen=True, slots=True)
class VisitorType:
    """A kind of shopper: what they browse (observable; their segment is learned from it)."""

    name: str
    favourite: str
    second: str
    mobile_share: float


class GroundTruth:
    """Hidden click probabilities per visitor type and offer of one slot, before and after a drift."""

    def __init__(
        self, catalogue: Catalogue, slot: str, *, seed: int = 0, drift_at: int | None = None
    ) -> None:
        self.slot = slot
        self.drift_at = drift_at
        self.offers = catalogue.offers_for_slot(slot)
        categories = sorted({c for offer in self.offers for c in offer.categories})
        if len(categories) < 3:
            raise ValueError(
                f"slot {slot!r} needs offers about at least 3 categories to simulate distinct visitor "
                f"types; it has {categories}"
            )
        rng = random.Random(seed)
        self.types: list[VisitorType] = []
        for favourite in categories:
            others = [c for c in categories if c != favourite]
            self.types.append(
                VisitorType(
                    name=f"{favourite}-lover",
                    favourite=favourite,
                    second=rng.choice(others),
                    mobile_share=round(rng.uniform(0.3, 0.7), 2),
                )
            )
        self._tables = {t.name: self._tables_for(t, rng) for t in self.types}

    def p_click(
        self, vtype: VisitorType, offer_id: str, *, device: str | None, returning: bool, impressions: int
    ) -> float:
        """The true probability that a visitor of ``vtype`` clicks ``offer_id`` at this point of the run."""
        before, after = self._tables[vtype.name]
        table = after if self.drift_at is not None and impressions >= self.drift_at else before
        p = table.get(offer_id)
        if p is None:  # a default offer
            p = DEFAULT_RETURNING if returning else DEFAULT_NEW
        return p * MOBILE_FACTOR if device == "mobile" else p

    def cross_sell(self, vtype: VisitorType, *, drifted: bool) -> str:
        """The hidden favourite offer of ``vtype`` (before or after the drift)."""
        table = self._tables[vtype.name][1 if drifted else 0]
        return max(table, key=lambda offer_id: table[offer_id])

    def _tables_for(
        self, vtype: VisitorType, rng: random.Random
    ) -> tuple[dict[str, float], dict[str, float]]:
        before: dict[str, float] = {}
        unrelated: list[str] = []
        for offer in self.offers:
            if offer.default and not offer.categories:
                continue
            if vtype.favourite in offer.categories:
                before[offer.id] = rng.uniform(*HIGH)
            elif vtype.second in offer.categories:
                before[offer.id] = rng.uniform(*MID)
            else:
                before[offer.id] = rng.uniform(*LOW)
                unrelated.append(offer.id)
        cross = rng.choice(unrelated)
        before[cross] = rng.uniform(*CROSS)

        after = dict(before)
        for offer in self.offers:
            if offer.id in after and vtype.favourite in offer.categories:
                after[offer.id] = rng.uniform(*MID)
        after[cross] = rng.uniform(*LOW)
        new_cross = rng.choice([offer_id for offer_id in unrelated if offer_id != cross] or [cross])
        after[new_cross] = rng.uniform(*CROSS)
        return before, after
