"""The click model's scores for all offers of a slot at once: the policy's scoring, vectorised.

:func:`tracker.models.policy.score_offers` builds each offer's feature dict and asks the
click model about it: ~9 µs per offer per request in Python, so a slot of 128 offers costs
over a millisecond of CPU per request (``bench/decision_cpu.py``). A :class:`SlotScorer`
is built once for one (immutable) model and one slot's offers, as the offer API holds them,
and computes the same scores with a few array operations per request, whatever the number
of offers.

The results are *the same floats*, not approximately equal ones: per offer, every
multiplication and addition happens in the order River's ``VectorDict.dot`` performs them on
the feature dict (:func:`tracker.models.features.offer_features` order: the offer, its
crosses, its categories' coarse features, ``match=interest``, ``match=page``; an absent
feature adds ``0.0``, which changes nothing), IEEE arithmetic and square roots are exact in
NumPy as in Python, and the one transcendental step (the sigmoid's ``exp``) is left to the
same Python function. ``tests/test_slot_scores.py`` holds the equality over random visitors,
catalogues and models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from river.utils.math import sigmoid

from tracker.models.catalogue import Offer
from tracker.models.features import (
    MATCH_INTEREST,
    MATCH_PAGE,
    UNCATEGORISED,
    ContextParts,
    coarse_name,
    cross_name,
    tally_key,
)
from tracker.models.learner import ClickModel

# Offers in a slot from which scoring them at once costs less CPU than one by one: each array
# operation has a fixed cost of about a microsecond, and a request makes some thirty of them
# (bench/decision_cpu.py, docs/BENCHMARKS.md, decide() one by one against at once: 9 offers
# 124 against 151 µs, 17 offers 196 against 182 µs, 33 offers 340 against 241 µs).
AT_ONCE_FROM = 16
# Vectors kept per scorer and kind (crosses, coarse features, tallies by strongest interest). Their
# keys come from requests and profiles (a page category, say), so a stream of made-up ones must
# not grow a scorer without bound: past this many, a vector is computed for its request only.
CACHED_VECTORS_MAX = 1024


class SlotScorer:
    """Click probabilities and optimistic estimates of ``offers`` for a visitor, per request.

    ``model`` must not learn while the scorer is in use (the offer API's never does): its
    weights, tallies and conversion values are read once, when first needed.
    """

    def __init__(self, model: ClickModel, offers: Sequence[Offer]) -> None:
        self.model = model
        self.offers = tuple(offers)
        self.position = {offer.id: i for i, offer in enumerate(self.offers)}
        self._weights = model.weights()
        self._intercept = model.intercept
        weights = self._weights
        self._own = np.array([weights.get(offer.id, 0.0) for offer in self.offers])
        self._margins = np.array([offer.margin for offer in self.offers])
        coarse_categories = [offer.categories or [UNCATEGORISED] for offer in self.offers]
        self._coarse_depth = max((len(c) for c in coarse_categories), default=0)
        self._coarse_categories = coarse_categories
        self._shares = np.array([1.0 / len(c) for c in coarse_categories])
        # The offers' categories as positions in one vector of interest levels (the last position
        # stands for "no such category" and is always 0).
        self._categories = sorted({c for offer in self.offers for c in offer.categories})
        self._category_position = {c: i for i, c in enumerate(self._categories)}
        missing = len(self._categories)
        depth = max((len(offer.categories) for offer in self.offers), default=0)
        self._category_columns = [
            np.array(
                [
                    self._category_position[offer.categories[k]] if k < len(offer.categories) else missing
                    for offer in self.offers
                ]
            )
            for k in range(depth)
        ]
        self._match_interest = weights.get(MATCH_INTEREST, 0.0)
        self._match_page = weights.get(MATCH_PAGE, 0.0)
        self._crosses: dict[str, np.ndarray] = {}
        self._coarse: dict[tuple[int, str], np.ndarray] = {}
        self._tallies: dict[str | None, tuple[np.ndarray, np.ndarray]] = {}
        self._values: np.ndarray | None = None

    def raw(self, parts: ContextParts) -> np.ndarray:
        """Each offer's ``w . x`` for this context (before the intercept)."""
        acc = self._own.copy()
        for suffix, value in parts.crosses:
            acc += self._cross(suffix) * value
        for k in range(self._coarse_depth):
            for suffix in parts.coarse:
                acc += self._coarse_weights(k, suffix) * self._shares
        if self._category_columns:
            if parts.levels:
                levels = np.array([parts.levels.get(c, 0.0) for c in self._categories] + [0.0])
                match = np.zeros(len(self.offers))
                for column in self._category_columns:
                    match += levels[column]
                acc += self._match_interest * match
            page = None if parts.page_category is None else self._category_position.get(parts.page_category)
            if page is not None:
                on_page = np.zeros(len(self.offers))
                for column in self._category_columns:
                    on_page[column == page] = 1.0
                acc += self._match_page * on_page
        return acc

    def estimates(
        self, parts: ContextParts, *, prior_impressions: float, z: float
    ) -> tuple[list[float], np.ndarray]:
        """Each offer's ``(mean, upper)`` as :meth:`ClickModel.estimate` gives them for the
        model's prediction: the means as a list, the optimistic bounds as an array."""
        predicted = [sigmoid(raw) for raw in (self.raw(parts) + self._intercept).tolist()]
        impressions, clicks = self._tally(parts.top)
        p = np.array(predicted, dtype=float)
        n = impressions + prior_impressions
        recorded = impressions > 0
        with np.errstate(divide="ignore", invalid="ignore"):  # n is 0 only where nothing is known
            mean = np.where(recorded, (clicks + prior_impressions * p) / n, p)
            if z > 0:  # ClickModel.wilson_upper, operation for operation
                z2n = z * z / n
                centre = mean + z2n / 2
                spread = z * np.sqrt(np.maximum(0.0, mean * (1 - mean)) / n + z2n / (4 * n))
                upper = np.where(n > 0, np.minimum(1.0, (centre + spread) / (1 + z2n)), p)
            else:
                upper = mean
        # Unrecorded offers keep the prediction itself, as the scalar path returns it.
        means = [
            m if seen else q for m, seen, q in zip(mean.tolist(), recorded.tolist(), predicted, strict=True)
        ]
        return means, upper

    def value_weights(self, value_weight: float) -> np.ndarray:
        """``1 + value_weight * value per click`` per offer."""
        if self._values is None:
            self._values = np.array([self.model.value_per_click(offer.id) for offer in self.offers])
        return 1.0 + value_weight * self._values

    def margin_weights(self, margin_weight: float) -> np.ndarray:
        return 1.0 + margin_weight * self._margins

    def _cross(self, suffix: str) -> np.ndarray:
        found = self._crosses.get(suffix)
        if found is None:
            weights = self._weights
            found = np.array([weights.get(cross_name(offer.id, suffix), 0.0) for offer in self.offers])
            _keep(self._crosses, suffix, found)
        return found

    def _coarse_weights(self, k: int, suffix: str) -> np.ndarray:
        found = self._coarse.get((k, suffix))
        if found is None:
            weights = self._weights
            found = np.array(
                [
                    weights.get(coarse_name(c[k], suffix), 0.0) if k < len(c) else 0.0
                    for c in self._coarse_categories
                ]
            )
            _keep(self._coarse, (k, suffix), found)
        return found

    def _tally(self, top: str | None) -> tuple[np.ndarray, np.ndarray]:
        found = self._tallies.get(top)
        if found is None:
            counts = [self.model.tally(tally_key(offer.id, top)) for offer in self.offers]
            found = (np.array([c[0] for c in counts]), np.array([c[1] for c in counts]))
            _keep(self._tallies, top, found)
        return found


def _keep(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) < CACHED_VECTORS_MAX:
        cache[key] = value


class SlotScorers:
    """The :class:`SlotScorer` of each slot for the current model: the offer API keeps one.

    A new model (another object) or another catalogue (another tuple of offers for the slot)
    gets new scorers; the old ones are dropped with it. A slot of fewer than
    :data:`AT_ONCE_FROM` offers gets None: one by one is cheaper there.
    """

    def __init__(self) -> None:
        self._model: ClickModel | None = None
        # id of the slot's offers tuple -> (that tuple, kept so that its id stays its own; scorer)
        self._by_offers: dict[int, tuple[tuple[Offer, ...], SlotScorer]] = {}

    def get(self, model: ClickModel, offers: tuple[Offer, ...]) -> SlotScorer | None:
        if len(offers) < AT_ONCE_FROM:
            return None
        if model is not self._model:
            self._model, self._by_offers = model, {}
        entry = self._by_offers.get(id(offers))
        if entry is None or entry[0] is not offers:
            entry = (offers, SlotScorer(model, offers))
            self._by_offers[id(offers)] = entry
        return entry[1]
