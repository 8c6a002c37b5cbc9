"""Visitor segments: online k-means over a few behavioural features of the profile.

Pure logic. One learner (:class:`SegmentLearner`, River's ``cluster.KMeans``)
sees a sample of profiles and publishes its centroids as a plain-data
snapshot (:meth:`SegmentLearner.snapshot`); every worker assigns each profile
to its nearest centroid with :func:`assign`, which needs no River at all.

Features are site-independent counts on a log scale, so that one model serves
every site and no feature dominates because of its unit. Segment ids are the
learner's cluster indices: online updates move a centroid without renaming it,
a restarted learner resumes from the last snapshot, and a learner started
afresh (another ``k``, say) renumbers its clusters after the nearest centroids
of the previous snapshot (:func:`match_ids`), so ids stay readable in dashboards.

>>> learner = SegmentLearner(clusters=2, seed=1)
>>> for _ in range(200):
...     _ = learner.learn({"pages": 0.2, "products": 0.1}), learner.learn({"pages": 3.0, "products": 3.5})
>>> snap = learner.snapshot(version=1, created_at=0)
>>> assign(snap, {"pages": 3.1, "products": 3.4}) != assign(snap, {"pages": 0.1, "products": 0.0})
True
"""

from __future__ import annotations

import collections
import functools
import math
import random
from collections.abc import Mapping
from itertools import repeat
from operator import sub
from typing import Any

from river import cluster

from tracker.models.profile import Profile

SNAPSHOT_SCHEMA = 1
SEED_SAMPLES_PER_CLUSTER = 20
FEATURES = (
    "pages",
    "products",
    "searches",
    "carts",
    "orders",
    "revenue",
    "sessions",
    "engagement",
    "breadth",
)


def profile_features(profile: Profile) -> dict[str, float]:
    """The profile as the clustering sees it: ``log1p`` of lifetime counts and totals.

    >>> p = Profile.new("shop", "visitor-01"); p.counts = {"product_view": 9}
    >>> round(profile_features(p)["products"], 3)
    2.303
    """
    counts = profile.counts
    return {
        "pages": math.log1p(counts.get("page_view", 0)),
        "products": math.log1p(counts.get("product_view", 0)),
        "searches": math.log1p(counts.get("search", 0)),
        "carts": math.log1p(counts.get("add_to_cart", 0)),
        "orders": math.log1p(profile.orders),
        # Revenue spans orders of magnitude more than counts: a gentler scale.
        "revenue": math.log1p(profile.revenue) / 2.0,
        "sessions": math.log1p(profile.sessions),
        "engagement": math.log1p(profile.engagement.score),
        "breadth": math.log1p(len(profile.interests)),
    }


def _distance(center: Mapping[str, float], x: Mapping[str, float]) -> float:
    return sum((center.get(k, 0.0) - x.get(k, 0.0)) ** 2 for k in {*center, *x})


def assign(snapshot: Mapping[str, Any], features: Mapping[str, float]) -> int:
    """The id of the centroid nearest to ``features`` in a published snapshot."""
    compiled = _compiled(snapshot)
    if not features.keys() <= compiled.keys:
        # A feature no centroid has (not what profile_features gives): the general form.
        centroids = snapshot["centroids"]
        return int(min(centroids, key=lambda cid: _distance(centroids[cid]["center"], features)))
    x = [features.get(k, 0.0) for k in compiled.order]
    best, best_distance = compiled.ids[0], float("inf")
    for cid, center in zip(compiled.ids, compiled.centers, strict=True):
        # sum((c - v) ** 2): the same squares and sum as _distance, over the same keys (in a
        # fixed order), with the loop in C (map) rather than in a comprehension.
        distance = sum(map(pow, map(sub, center, x), repeat(2)))
        if distance < best_distance:  # strict: the first of equals wins, as with min()
            best, best_distance = cid, distance
    return best


class _Compiled:
    """A snapshot's centroids as tuples over one key order: the worker assigns every changed
    profile of every batch against the same snapshot, and building the key union per centroid
    per call (``_distance``) was most of that cost."""

    __slots__ = ("centers", "ids", "keys", "order", "snapshot")

    def __init__(self, snapshot: Mapping[str, Any]) -> None:
        centroids = snapshot["centroids"]
        self.snapshot = snapshot  # kept so that its id cannot be reused by another dict
        self.order = tuple(dict.fromkeys(k for c in centroids.values() for k in c["center"]))
        self.keys = frozenset(self.order)
        self.ids = [int(cid) for cid in centroids]
        self.centers = [tuple(c["center"].get(k, 0.0) for k in self.order) for c in centroids.values()]


_last_compiled: _Compiled | None = None


def _compiled(snapshot: Mapping[str, Any]) -> _Compiled:
    """The compiled form of ``snapshot``, cached for the last one seen (by identity: a snapshot is
    published plain data, replaced as a whole by a new dict, never changed in place)."""
    global _last_compiled
    compiled = _last_compiled
    if compiled is None or compiled.snapshot is not snapshot:
        compiled = _last_compiled = _Compiled(snapshot)
    return compiled


def match_ids(
    previous: Mapping[int, Mapping[str, float]], current: Mapping[int, Mapping[str, float]]
) -> dict[int, int]:
    """Map each current cluster index to an id: the nearest unused previous id, greedily by
    distance; clusters left over get fresh ids above the previous ones.

    >>> match_ids({0: {"a": 0.0}, 1: {"a": 5.0}}, {0: {"a": 4.8}, 1: {"a": 0.3}, 2: {"a": 9.0}})
    {0: 1, 1: 0, 2: 2}
    """
    pairs = sorted(
        (_distance(c_center, p_center), c_id, p_id)
        for c_id, c_center in current.items()
        for p_id, p_center in previous.items()
    )
    mapping: dict[int, int] = {}
    used: set[int] = set()
    for _, c_id, p_id in pairs:
        if c_id not in mapping and p_id not in used:
            mapping[c_id] = p_id
            used.add(p_id)
    fresh = max([*previous, -1]) + 1
    for c_id in sorted(current):
        if c_id not in mapping:
            mapping[c_id] = fresh
            fresh += 1
    return dict(sorted(mapping.items()))


def describe(center: Mapping[str, float], means: Mapping[str, float]) -> str:
    """A short readable label: the features where this centroid is furthest above the others.

    >>> describe({"orders": 2.0, "pages": 1.0}, {"orders": 0.5, "pages": 1.0})
    'orders'
    >>> describe({"orders": 0.0, "pages": 0.1}, {"orders": 0.5, "pages": 1.0})
    'low-activity'
    """
    lifts = sorted(((center.get(f, 0.0) - means.get(f, 0.0), f) for f in FEATURES), reverse=True)
    top = [name for lift, name in lifts[:2] if lift > 0.25]
    return "+".join(top) if top else "low-activity"


class SegmentLearner:
    """Online k-means (River) over :func:`profile_features`; not thread-safe: one writer.

    Parameters
    ----------
    clusters
        Number of segments.
    halflife
        How far a centroid moves towards each sample (River's ``halflife``).
    seed
        Seeds the initial centroids, so that the same samples give the same model.
    """

    def __init__(self, *, clusters: int = 6, halflife: float = 0.05, seed: int = 42) -> None:
        self.clusters = clusters
        self.halflife = halflife
        self.seed = seed
        # Initial centroids near typical feature values (log1p of small counts).
        self._model = cluster.KMeans(n_clusters=clusters, halflife=halflife, mu=1.0, sigma=0.6, seed=seed)
        self._counts: dict[int, int] = dict.fromkeys(range(clusters), 0)
        self._ids: dict[int, int] = {i: i for i in range(clusters)}
        self._samples = 0
        # Random initial centroids can end up nearest to nothing ("dead" segments): the first
        # samples are buffered and the centroids seeded from them with k-means++.
        self._warmup: list[dict[str, float]] | None = []
        self._warmup_size = SEED_SAMPLES_PER_CLUSTER * clusters

    @property
    def samples(self) -> int:
        return self._samples

    def learn(self, features: Mapping[str, float]) -> int:
        """Move the nearest centroid towards ``features``; return that cluster's id."""
        x = {f: float(features.get(f, 0.0)) for f in FEATURES}
        if self._warmup is not None:
            self._warmup.append(x)
            if len(self._warmup) < self._warmup_size:
                self._samples += 1
                return self._ids[self._model.predict_one(x)]
            self._seed_from_warmup()
            self._samples += 1
            return self._ids[self._model.predict_one(x)]
        index = self._model.learn_predict_one(x)
        self._counts[index] += 1
        self._samples += 1
        return self._ids[index]

    def _seed_from_warmup(self) -> None:
        """k-means++ seeding on the buffered samples, then learn them in order."""
        samples, self._warmup = self._warmup or [], None
        if len(samples) < self.clusters:
            return
        rng = random.Random(self.seed)
        centres = [samples[rng.randrange(len(samples))]]
        while len(centres) < self.clusters:
            weights = [min(_distance(c, x) for c in centres) for x in samples]
            if not any(weights):
                break
            centres.append(rng.choices(samples, weights=weights)[0])
        rand = functools.partial(self._model._rng.gauss, 1.0, 0.6)
        for index, centre in enumerate(centres):
            self._model.centers[index] = collections.defaultdict(rand, centre)
        for x in samples:
            self._counts[self._model.learn_predict_one(x)] += 1

    def centroids(self) -> dict[int, dict[str, float]]:
        """Current centroids by segment id (features never seen read as the initial value)."""
        if self._warmup is not None and len(self._warmup) >= self.clusters:
            self._seed_from_warmup()
        return {
            self._ids[i]: {f: float(center[f]) for f in FEATURES} for i, center in self._model.centers.items()
        }

    def snapshot(self, *, version: int, created_at: int) -> dict[str, Any]:
        """Plain data for Redis: what :func:`assign` and dashboards read."""
        centroids = self.centroids()
        means = {f: sum(c[f] for c in centroids.values()) / len(centroids) for f in FEATURES}
        counts = {self._ids[i]: n for i, n in self._counts.items()}
        return {
            "schema": SNAPSHOT_SCHEMA,
            "version": version,
            "created_at": created_at,
            "features": list(FEATURES),
            "samples": self._samples,
            "params": {"clusters": self.clusters, "halflife": self.halflife, "seed": self.seed},
            "centroids": {
                str(cid): {
                    "center": {f: round(v, 5) for f, v in center.items()},
                    "label": describe(center, means),
                    "samples": counts[cid],
                }
                for cid, center in sorted(centroids.items())
            },
        }

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any], *, clusters: int, halflife: float, seed: int):
        """Resume from a published snapshot; a snapshot of another shape seeds only the ids."""
        learner = cls(clusters=clusters, halflife=halflife, seed=seed)
        if snapshot.get("schema") != SNAPSHOT_SCHEMA:
            return learner
        previous = {int(cid): dict(c["center"]) for cid, c in snapshot["centroids"].items()}
        learner._samples = int(snapshot.get("samples", 0))
        if len(previous) == clusters:
            learner._warmup = None
            rand = functools.partial(learner._model._rng.gauss, 1.0, 0.6)
            for index, (cid, center) in enumerate(sorted(previous.items())):
                learner._model.centers[index] = collections.defaultdict(rand, center)
                learner._ids[index] = cid
                learner._counts[index] = int(snapshot["centroids"][str(cid)].get("samples", 0))
        else:
            # Another k: start afresh but keep ids close to the old ones where centroids are close.
            learner._ids = match_ids(previous, {i: learner.centroids()[i] for i in range(clusters)})
        return learner
