"""Visitor segments: online k-means over a few behavioural features of the profile.

Pure logic. One learner (:class:`SegmentLearner`, River's ``cluster.KMeans``)
sees a sample of profiles and publishes its centroids as a plain-data
snapshot (:meth:`SegmentLearner.snapshot`); every worker assigns each profile
to its nearest centroid with :func:`assign`, which needs no River at all.

Features are counts on a log scale (site-independent, so that one model serves
every site and no feature dominates because of its unit) and *what* the visitor
is interested in: the share of their interest held by each of their strongest
categories (``interest:<category>``), scaled to weigh like the counts. Two
visitors who browse as much but different things fall in different segments.
The feature set is open (a centroid is a dict; a missing key counts as 0), so
new categories need no new model. Segment ids are the
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
from math import dist
from typing import Any

from river import cluster

from tracker.models.profile import Profile, ProfileConfig

# 1: the log-count features only. 2: adds the interest shares (``interest:<category>``).
SNAPSHOT_SCHEMA = 2
SEED_SAMPLES_PER_CLUSTER = 20
# The centroids start from the best of BATCH_RUNS batch k-means runs over the warm-up samples,
# each seeded by greedy k-means++ and refined by LLOYD_ROUNDS rounds.
BATCH_RUNS = 8
LLOYD_ROUNDS = 10
# The log-count features every profile has (interest shares come on top, per category).
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
INTEREST_PREFIX = "interest:"
# Categories whose share is a feature (the strongest ones: the rest is noise for clustering).
TOP_INTERESTS = 3
# A share (0..1) times this: a visitor wholly into one category is as far from one wholly into
# another as ``sqrt(2) * INTEREST_SCALE``, comparable to the spread of the log-count features.
INTEREST_SCALE = 3.0
# Interest features this faint in every centroid are dropped from the learner's model.
PRUNE_BELOW = 0.005
# Interest is decayed with the default half-life (the features must not depend on settings).
_HALF_LIFE_SECONDS = ProfileConfig().half_life_seconds


def profile_features(profile: Profile) -> dict[str, float]:
    """The profile as the clustering sees it: ``log1p`` of lifetime counts and totals, and the
    share of interest (decayed to the last event) of each of its ``TOP_INTERESTS`` strongest
    categories, times ``INTEREST_SCALE``.

    >>> from tracker.models.profile import Interest
    >>> p = Profile.new("shop", "visitor-01"); p.counts = {"product_view": 9}
    >>> p.interests = {"shoes": Interest(3.0, 0), "books": Interest(1.0, 0)}
    >>> f = profile_features(p)
    >>> round(f["products"], 3), f["interest:shoes"], f["interest:books"]
    (2.303, 2.25, 0.75)
    """
    counts = profile.counts
    features = {
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
    if profile.interests:
        scores = profile.interest_items_at(profile.last_seen, half_life_seconds=_HALF_LIFE_SECONDS)
        total = sum(score for _, score in scores)
        if total > 0:
            scale = INTEREST_SCALE / total
            for category, score in scores[:TOP_INTERESTS]:
                features[INTEREST_PREFIX + category] = score * scale
    return features


def _distance(center: Mapping[str, float], x: Mapping[str, float]) -> float:
    """Squared Euclidean distance, a missing key counting as 0. Summed in the dicts' own order
    (not a set's, which depends on the string hash seed): the same inputs, the same float, so
    that ties break the same way in every process."""
    get = x.get
    total = sum((v - get(k, 0.0)) ** 2 for k, v in center.items())
    return total + sum(v * v for k, v in x.items() if k not in center)


def assign(snapshot: Mapping[str, Any], features: Mapping[str, float]) -> int:
    """The id of the centroid nearest to ``features`` in a published snapshot."""
    compiled = _compiled(snapshot)
    # A feature no centroid has (a category the model has not learned) adds the same square to
    # every distance: it cannot change the nearest, and is left out.
    x = list(map(features.get, compiled.order, repeat(0.0)))
    best, best_distance = compiled.ids[0], float("inf")
    for cid, center in zip(compiled.ids, compiled.centers, strict=True):
        # The Euclidean distance (the root of _distance, over the same keys in a fixed order),
        # computed in C: nearest by one is nearest by the other.
        distance = dist(center, x)
        if distance < best_distance:  # strict: the first of equals wins, as with min()
            best, best_distance = cid, distance
    return best


class _Compiled:
    """A snapshot's centroids as tuples over one key order: the worker assigns every changed
    profile of every batch against the same snapshot, and building the key union per centroid
    per call (``_distance``) was most of that cost."""

    __slots__ = ("centers", "ids", "order", "snapshot")

    def __init__(self, snapshot: Mapping[str, Any]) -> None:
        centroids = snapshot["centroids"]
        self.snapshot = snapshot  # kept so that its id cannot be reused by another dict
        self.order = tuple(dict.fromkeys(k for c in centroids.values() for k in c["center"]))
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


def _batch_kmeans(
    samples: list[dict[str, float]], k: int, keys: list[str], rng: random.Random
) -> tuple[float, list[dict[str, float]]]:
    """Greedy k-means++ seeding then Lloyd rounds: ``(inertia, centroids)`` (fewer than ``k``
    centroids if the samples have fewer distinct points)."""
    centres = [samples[rng.randrange(len(samples))]]
    nearest = [_distance(centres[0], x) for x in samples]
    tries = 2 + int(math.log(k))
    while len(centres) < k and any(nearest):
        best: tuple[float, list[float], dict[str, float]] | None = None
        for candidate in rng.choices(samples, weights=nearest, k=tries):
            after = [min(d, _distance(candidate, x)) for d, x in zip(nearest, samples, strict=True)]
            if best is None or sum(after) < best[0]:
                best = (sum(after), after, candidate)
        assert best is not None
        _, nearest, chosen = best
        centres.append(chosen)
    inertia = sum(nearest)
    for _ in range(LLOYD_ROUNDS):
        groups: list[list[dict[str, float]]] = [[] for _ in centres]
        inertia = 0.0
        for x in samples:
            distances = [_distance(c, x) for c in centres]
            nearest_index = min(range(len(centres)), key=distances.__getitem__)
            groups[nearest_index].append(x)
            inertia += distances[nearest_index]
        centres = [
            {f: sum(x.get(f, 0.0) for x in group) / len(group) for f in keys} if group else centre
            for centre, group in zip(centres, groups, strict=True)
        ]
    return inertia, centres


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
    lifts = sorted(((center.get(f, 0.0) - means.get(f, 0.0), f) for f in {*center, *means}), reverse=True)
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
        # samples are buffered and the centroids seeded from them (:func:`_batch_kmeans`).
        self._warmup: list[dict[str, float]] | None = []
        self._warmup_size = SEED_SAMPLES_PER_CLUSTER * clusters
        # The centroids last given out during the warm-up (the ids it published).
        self._provisional: dict[int, dict[str, float]] | None = None
        # Every feature learned so far, in the order first seen (a dict: ordered, deterministic).
        self._keys: dict[str, None] = dict.fromkeys(FEATURES)

    @property
    def samples(self) -> int:
        return self._samples

    def learn(self, features: Mapping[str, float]) -> int:
        """Move the nearest centroid towards ``features``; return that cluster's id.

        Every known feature is learned, 0 where ``features`` lacks it (so a centroid's share of
        a category falls as visitors without it join); a feature seen for the first time starts
        at 0 in every centroid."""
        keys = self._keys
        for key in features:
            if key not in keys:
                keys[key] = None
        x = {f: float(features.get(f, 0.0)) for f in keys}
        if self._warmup is not None:
            self._warmup.append(x)
            if len(self._warmup) < self._warmup_size:
                self._samples += 1
                return self._ids[self._nearest(x)]
            self._seed_from_warmup()
            self._samples += 1
            return self._ids[self._nearest(x)]
        index = self._learn_one(x)
        self._counts[index] += 1
        self._samples += 1
        return self._ids[index]

    def _nearest(self, x: Mapping[str, float]) -> int:
        """The index of the centroid nearest to ``x`` (River's ``predict_one``, but with
        :func:`_distance`: River sums over a set of keys, in an order that varies by process)."""
        centers = self._model.centers
        return min(centers, key=lambda i: _distance(centers[i], x))

    def _learn_one(self, x: Mapping[str, float]) -> int:
        """River's ``learn_predict_one``: move the nearest centroid towards ``x``."""
        index = self._nearest(x)
        center = self._model.centers[index]
        for f, v in x.items():
            center[f] += self.halflife * (v - center[f])
        return index

    def _set_centres(self, centres: list[Mapping[str, float]]) -> None:
        """Replace the centroids; features they lack read as 0 (as in :func:`assign`)."""
        for index, centre in enumerate(centres):
            self._model.centers[index] = collections.defaultdict(
                float, {f: float(centre.get(f, 0.0)) for f in self._keys}
            )

    def _seed_from_warmup(self) -> None:
        """Seed the centroids from the buffered samples (:func:`_batch_kmeans`), then learn them
        in order. Online updates never undo a poor start (two centroids in one group of visitors,
        one across two groups), so the start is the best of a few batch runs."""
        samples, self._warmup = self._warmup or [], None
        if len(samples) < self.clusters:
            return
        centres = self._warmup_centres(samples)
        self._set_centres(centres)
        if self._provisional is not None:
            # Snapshots were published during the warm-up: keep their ids where centroids are close.
            self._ids = match_ids(self._provisional, dict(enumerate(self.centroids().values())))
            self._provisional = None
        for x in samples:
            self._counts[self._learn_one({f: x.get(f, 0.0) for f in self._keys})] += 1

    def _warmup_centres(self, samples: list[dict[str, float]]) -> list[dict[str, float]]:
        rng = random.Random(self.seed)
        runs = [_batch_kmeans(samples, self.clusters, list(self._keys), rng) for _ in range(BATCH_RUNS)]
        centres = min(runs, key=lambda run: run[0])[1]
        rand = functools.partial(random.Random(self.seed).gauss, 1.0, 0.6)
        # Fewer distinct samples than clusters: the others get random (log-count) centroids.
        return centres + [{f: rand() for f in FEATURES} for _ in range(self.clusters - len(centres))]

    def centroids(self) -> dict[int, dict[str, float]]:
        """Current centroids by segment id, over every feature learned so far (during the
        warm-up, once it holds ``clusters`` samples: provisional ones, from the samples so far)."""
        if self._warmup is not None and len(self._warmup) >= self.clusters:
            centres = self._warmup_centres(self._warmup)
            self._provisional = {
                self._ids[i]: {f: float(c.get(f, 0.0)) for f in self._keys} for i, c in enumerate(centres)
            }
            return dict(self._provisional)
        return {
            self._ids[i]: {f: float(center[f]) for f in self._keys}
            for i, center in self._model.centers.items()
        }

    def _prune(self) -> None:
        """Forget interest features faint in every centroid (categories nobody browses any more)."""
        if self._warmup is not None:
            return
        centers = self._model.centers.values()
        faint = [f for f in self._keys if f not in FEATURES and all(abs(c[f]) < PRUNE_BELOW for c in centers)]
        for f in faint:
            del self._keys[f]
            for center in centers:
                center.pop(f, None)

    def snapshot(self, *, version: int, created_at: int) -> dict[str, Any]:
        """Plain data for Redis: what :func:`assign` and dashboards read (faint interest features
        are pruned from the model first)."""
        self._prune()
        centroids = self.centroids()
        means = {f: sum(c[f] for c in centroids.values()) / len(centroids) for f in self._keys}
        counts = {self._ids[i]: n for i, n in self._counts.items()}
        return {
            "schema": SNAPSHOT_SCHEMA,
            "version": version,
            "created_at": created_at,
            "features": list(self._keys),
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
        """Resume from a published snapshot; a snapshot of another schema is ignored (a fresh
        learner), one with another number of clusters seeds only the ids."""
        learner = cls(clusters=clusters, halflife=halflife, seed=seed)
        if snapshot.get("schema") != SNAPSHOT_SCHEMA:
            return learner
        previous = {int(cid): dict(c["center"]) for cid, c in snapshot["centroids"].items()}
        learner._samples = int(snapshot.get("samples", 0))
        if len(previous) == clusters:
            learner._warmup = None
            for center in previous.values():
                learner._keys.update(dict.fromkeys(center))
            learner._set_centres([center for _, center in sorted(previous.items())])
            for index, cid in enumerate(sorted(previous)):
                learner._ids[index] = cid
                learner._counts[index] = int(snapshot["centroids"][str(cid)].get("samples", 0))
        else:
            # Another k: start afresh but keep ids close to the old ones where centroids are close.
            learner._ids = match_ids(previous, {i: learner.centroids()[i] for i in range(clusters)})
        return learner
