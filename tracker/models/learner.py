"""The click model: River logistic regression on offer x context features, with plain-data snapshots.

One writer (the trainer) learns from rewards with :meth:`ClickModel.learn_one`
and publishes :meth:`ClickModel.to_snapshot`: a JSON-able dict with a schema
version, never a pickle. Readers (the offer API) rebuild it with
:meth:`ClickModel.from_snapshot` into the same River class with the same
weights, in the same order, so they predict *exactly* what the writer
predicted (equal floats, not approximately equal). A restored model can also
continue learning, which is how a restarted writer resumes.

Why a shared logistic regression (design.md): River's LinUCBDisjoint costs
~0.3 ms per arm and grows with features squared; this model scores an offer
in about a microsecond, and the shared ``match=*`` features let a new offer start
from what all others taught.

Conversion value is kept beside the click model, per offer: clicks and the
value of the purchases attributed to them, shrunk towards the overall value
per click (:meth:`ClickModel.value_per_click`). The policy may weight the
click probability by it.

Snapshot layout (``schema_version`` 2; 1 had no ``tallies``)::

    {"schema": "tracker.click_model", "schema_version": 2, "features_version": 1,
     "version": "0000001234-3f9a0c1d2e", "created_ms": ..., "meta": {...},
     "learner": {"class": "river.linear_model.LogisticRegression", "optimizer": "river.optim.SGD",
                 "river": "0.26.1", "learning_rate": 0.05, "intercept_learning_rate": 0.01,
                 "l2": 0.0, "intercept_init": -3.5, "clip_gradient": 1e12, "value_prior_clicks": 5.0},
     "state": {"intercept": ..., "n_iterations": ..., "weights": {"run|seg=2": 0.41, ...},
               "explore_from": 0, "restarts": 0, "tallies": {"run|top=shoes": [310, 38], ...}},
     "updates": 1234, "clicks": 87, "values": {"run": [31, 1520.0], ...}}

``version`` is ``<updates, 10 digits>-<hash of learner settings and state>``:
it sorts by age, and two models that could predict or learn differently never
share it.

>>> model = ClickModel()
>>> x = {"run": 1.0, "run|seg=2": 1.0, "match": 0.5}
>>> for _ in range(200):
...     _ = model.learn_one(x, True, offer_id="run", value=40.0)
>>> restored = ClickModel.from_snapshot(model.to_snapshot())
>>> restored.predict_one(x) == model.predict_one(x), restored.version == model.version
(True, True)
>>> round(model.predict_one(x), 2)
0.95
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import river
from river import linear_model, optim, utils
from river.utils.math import sigmoid

from tracker.models.features import FEATURES_VERSION, MATCH_INTEREST, MATCH_PAGE, tally_key_of

SNAPSHOT_SCHEMA = "tracker.click_model"
# 2 added the exploration tallies (``state.tallies``); a layout-1 snapshot is read as having none.
SNAPSHOT_SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)

# The untrained model's beliefs: a banner is clicked ~3% of the time (logit -3.5), more when the
# visitor likes the offer's categories or is on a page about them. These are where learning starts.
DEFAULT_INTERCEPT = -3.5
DEFAULT_PRIORS: Mapping[str, float] = {MATCH_INTEREST: 2.0, MATCH_PAGE: 0.5}


class SnapshotError(ValueError):
    """A snapshot this code cannot load; the message says what to do."""


class ClickModel:
    """Probability that a visitor clicks an offer, from sparse named features.

    Parameters
    ----------
    learning_rate
        SGD step for the weights.
    intercept_learning_rate
        SGD step for the intercept (the overall click rate).
    l2
        L2 penalty on the weights of the features present in an update.
    intercept_init
        Starting intercept (logit of the prior click rate).
    priors
        Starting weights, e.g. ``{"match=interest": 2.0}``; None uses :data:`DEFAULT_PRIORS`.
    value_prior_clicks
        How many clicks' worth of the overall value per click an offer's own
        value per click is shrunk towards.
    """

    def __init__(
        self,
        *,
        learning_rate: float = 0.05,
        intercept_learning_rate: float = 0.01,
        l2: float = 0.0,
        intercept_init: float = DEFAULT_INTERCEPT,
        priors: Mapping[str, float] | None = None,
        value_prior_clicks: float = 5.0,
    ) -> None:
        self.learning_rate = learning_rate
        self.intercept_learning_rate = intercept_learning_rate
        self.l2 = l2
        self.intercept_init = intercept_init
        self.priors = dict(DEFAULT_PRIORS if priors is None else priors)
        self.value_prior_clicks = value_prior_clicks
        self._lr = self._new_regression()
        for name, weight in self.priors.items():
            self._lr._weights[name] = float(weight)
        self._updates = 0
        self._clicks = 0
        # offer id -> [clicks, attributed conversion value]
        self._values: dict[str, list[float]] = {}
        # Update count at which exploration (re)started: the policy's epsilon decays from there.
        self._explore_from = 0
        self._restarts = 0
        # tally key (features.tally_key: offer x strongest interest) -> [impressions, clicks] learned
        # since exploration (re)started: what the policy's exploration reads (:meth:`ceiling`).
        self._tallies: dict[str, list[float]] = {}
        self._overall_value: float | None = None
        # (tally key, z) -> ceiling: tallies change only when learning, and the offer API's model
        # never learns, so each is computed once per published model instead of per request.
        self._ceilings: dict[tuple[str, float], float] = {}
        self._version: str | None = None

    def _new_regression(self) -> linear_model.LogisticRegression:
        return linear_model.LogisticRegression(
            optimizer=optim.SGD(self.learning_rate),
            intercept_lr=self.intercept_learning_rate,
            l2=self.l2,
            intercept_init=self.intercept_init,
        )

    # --- Reading ---------------------------------------------------------------

    def predict_one(self, x: Mapping[str, float]) -> float:
        """Click probability for one (context, offer) feature dict.

        River's ``predict_proba_one(x)[True]`` without the dict of both classes it builds: the
        same dot product, intercept and sigmoid, so the same float (``test_learner`` holds it).
        """
        lr = self._lr
        return sigmoid(lr._weights.dot(x) + lr.intercept)

    def value_per_click(self, offer_id: str) -> float:
        """Expected conversion value of a click on ``offer_id`` (0 until purchases are attributed)."""
        if self._overall_value is None:
            total_clicks = sum(clicks for clicks, _ in self._values.values())
            total_value = sum(value for _, value in self._values.values())
            self._overall_value = total_value / total_clicks if total_clicks else 0.0
        clicks, value = self._values.get(offer_id, (0.0, 0.0))
        return (value + self.value_prior_clicks * self._overall_value) / (clicks + self.value_prior_clicks)

    def tally(self, key: str) -> tuple[float, float]:
        """Impressions and clicks learned under ``key`` since exploration (re)started."""
        impressions, clicks = self._tallies.get(key, (0.0, 0.0))
        return impressions, clicks

    def ceiling(self, key: str, *, z: float) -> float:
        """The highest click rate still plausible for ``key`` (Wilson upper bound, ``z`` standard errors).

        1.0 while nothing was learned under the key. The policy stops spending most of its
        exploration on an offer once this falls below what the greedy choice is expected to earn.

        >>> model = ClickModel()
        >>> model.ceiling("run|top=shoes", z=2.0)
        1.0
        >>> for _ in range(40):
        ...     _ = model.learn_one({"run|top=shoes": 1.0}, False, offer_id="run")
        >>> round(model.ceiling("run|top=shoes", z=2.0), 3)
        0.091
        """
        found = self._ceilings.get((key, z))
        if found is None:
            impressions, clicks = self._tallies.get(key, (0.0, 0.0))
            found = 1.0 if impressions <= 0 else wilson_upper(clicks / impressions, impressions, z)
            self._ceilings[key, z] = found
        return found

    def estimate(
        self, key: str, predicted: float, *, prior_impressions: float, z: float
    ) -> tuple[float, float]:
        """The click rate under ``key`` and an optimistic bound of it: ``(mean, upper)``.

        The regression's ``predicted`` rate for this context counts as ``prior_impressions``
        impressions beside the ones tallied under ``key`` (offer x strongest interest, since
        exploration restarted): the mean follows the model while a key has little evidence and
        what visitors actually did once it has plenty, so an offer the shared weights misjudge
        for one kind of visitor (another kind's favourite, or a cross-sell nothing in its
        categories gives away) is judged on its own record. ``upper`` is the Wilson bound
        ``z`` standard errors up over those impressions: wide while few, so the policy tries a
        promising offer until its record says whether it is better (``z`` 0: the mean).

        >>> model = ClickModel()
        >>> mean, upper = model.estimate("run|top=shoes", 0.03, prior_impressions=2.0, z=1.5)
        >>> round(mean, 3), round(upper, 2)
        (0.03, 0.56)
        >>> for i in range(100):
        ...     _ = model.learn_one({"run|top=shoes": 1.0}, i % 5 == 0, offer_id="run")
        >>> mean, upper = model.estimate("run|top=shoes", 0.03, prior_impressions=2.0, z=1.5)
        >>> round(mean, 3), round(upper, 3)
        (0.197, 0.262)
        """
        impressions, clicks = self._tallies.get(key, (0.0, 0.0))
        n = impressions + prior_impressions
        if n <= 0:
            return predicted, predicted
        # No record: exactly the model's prediction (m * p / m need not round back to p).
        mean = predicted if impressions <= 0 else (clicks + prior_impressions * predicted) / n
        return mean, (wilson_upper(mean, n, z) if z > 0 else mean)

    def weights(self) -> dict[str, float]:
        """Every feature's weight, as a plain dict (a copy)."""
        return self._lr._weights.to_dict()

    def weight(self, name: str) -> float:
        return self._lr._weights.get(name, 0.0)

    def contributions(self, x: Mapping[str, float]) -> list[tuple[str, float]]:
        """Each feature's ``weight * value``, largest first (what the explain endpoint shows)."""
        weights = self._lr._weights
        parts = [(name, weights.get(name, 0.0) * value) for name, value in x.items()]
        return sorted(parts, key=lambda item: (-item[1], item[0]))

    @property
    def intercept(self) -> float:
        return self._lr.intercept

    @property
    def updates(self) -> int:
        """How many rewards the model has learned from."""
        return self._updates

    @property
    def clicks(self) -> int:
        return self._clicks

    @property
    def version(self) -> str:
        """The model version id (``<updates>-<content hash>``), as written in its snapshot."""
        if self._version is None:
            self._version = _version(
                self._updates, self._learner_config(), self._state(), self._values_data()
            )
        return self._version

    # --- Learning --------------------------------------------------------------

    def learn_one(
        self, x: Mapping[str, float], clicked: bool, *, offer_id: str | None = None, value: float = 0.0
    ) -> float:
        """Learn from one reward: the features of the offer shown, and whether it was clicked.

        ``value`` is the conversion value attributed to the click; ``offer_id``
        is needed to learn it. ``x`` is not modified. Returns the click
        probability the model gave ``x`` before this update (for drift monitoring).
        """
        p = self.predict_one(x)
        self._lr.learn_one(x, bool(clicked))
        self._updates += 1
        if offer_id is not None:
            tally = self._tallies.setdefault(tally_key_of(x, offer_id), [0.0, 0.0])
            tally[0] += 1.0
            tally[1] += 1.0 if clicked else 0.0
            self._ceilings.clear()
        if clicked:
            self._clicks += 1
            if offer_id is not None:
                entry = self._values.setdefault(offer_id, [0.0, 0.0])
                entry[0] += 1.0
                entry[1] += max(0.0, float(value))
                self._overall_value = None
        self._version = None
        return p

    @property
    def restarts(self) -> int:
        """How many times exploration was restarted (drift); the policy explores harder after one."""
        return self._restarts

    @property
    def exploration_age(self) -> int:
        """Updates since exploration (re)started: what the policy's epsilon decays with."""
        return self._updates - self._explore_from

    def restart_exploration(self, *, shrink: float = 1.0) -> None:
        """Explore as if new again (the trainer calls this when the world seems to have changed).

        ``shrink`` below 1 also scales every weight by it: old certainties weigh
        less against the evidence to come. The exploration tallies start over: what an
        offer earned before no longer says what it can earn now.
        """
        self._explore_from = self._updates
        self._restarts += 1
        self._tallies = {}
        self._ceilings.clear()
        if shrink != 1.0:
            weights = self.weights()
            self._lr._weights = utils.VectorDict({name: w * shrink for name, w in weights.items()})
        self._version = None

    # --- Snapshots ---------------------------------------------------------------

    def to_snapshot(
        self, *, created_ms: int | None = None, meta: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Plain JSON-able data from which :meth:`from_snapshot` rebuilds an identical model."""
        state = self._state()
        for name, weight in state["weights"].items():
            if not math.isfinite(weight):
                raise SnapshotError(
                    f"weight of feature {name!r} is {weight}; lower the learning rate, the model diverged"
                )
        values = self._values_data()
        return {
            "schema": SNAPSHOT_SCHEMA,
            "schema_version": SNAPSHOT_SCHEMA_VERSION,
            "features_version": FEATURES_VERSION,
            "version": self.version,
            "created_ms": created_ms,
            "meta": dict(meta or {}),
            "learner": self._learner_config() | {"river": river.__version__},
            "state": state,
            "updates": self._updates,
            "clicks": self._clicks,
            "values": values,
        }

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> ClickModel:
        """Rebuild a model from :meth:`to_snapshot` data; raise :class:`SnapshotError` if it cannot."""
        _check_header(data)
        try:
            learner = data["learner"]
            model = cls(
                learning_rate=float(learner["learning_rate"]),
                intercept_learning_rate=float(learner["intercept_learning_rate"]),
                l2=float(learner["l2"]),
                intercept_init=float(learner["intercept_init"]),
                priors={str(k): float(v) for k, v in learner["priors"].items()},
                value_prior_clicks=float(learner["value_prior_clicks"]),
            )
            state = data["state"]
            # The same class, the same weights in the same order: predictions are bit-identical.
            model._lr._weights = utils.VectorDict({str(k): float(v) for k, v in state["weights"].items()})
            model._lr.intercept = float(state["intercept"])
            model._lr.clip_gradient = float(learner["clip_gradient"])
            model._lr.optimizer.n_iterations = int(state["n_iterations"])
            model._explore_from = int(state["explore_from"])
            model._restarts = int(state["restarts"])
            model._tallies = {
                str(k): [float(n), float(c)] for k, (n, c) in (state.get("tallies") or {}).items()
            }
            model._updates = int(data["updates"])
            model._clicks = int(data["clicks"])
            model._values = {str(k): [float(c), float(v)] for k, (c, v) in data["values"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(
                f"click-model snapshot {data.get('version')!r} is malformed ({exc!r}); "
                "publish a fresh snapshot from the trainer"
            ) from None
        expected = data.get("version")
        if expected != model.version:
            raise SnapshotError(
                f"click-model snapshot says version {expected!r} but its content hashes to "
                f"{model.version!r}; it was altered or truncated, publish it again"
            )
        return model

    def _learner_config(self) -> dict[str, Any]:
        return {
            "class": "river.linear_model.LogisticRegression",
            "optimizer": "river.optim.SGD",
            "learning_rate": self.learning_rate,
            "intercept_learning_rate": self.intercept_learning_rate,
            "l2": self.l2,
            "intercept_init": self.intercept_init,
            "clip_gradient": self._lr.clip_gradient,
            "value_prior_clicks": self.value_prior_clicks,
            "priors": self.priors,
        }

    def _state(self) -> dict[str, Any]:
        state = {
            "intercept": self._lr.intercept,
            "n_iterations": self._lr.optimizer.n_iterations,
            "weights": self.weights(),
            "explore_from": self._explore_from,
            "restarts": self._restarts,
        }
        if self._tallies:  # absent while empty: a layout-1 snapshot keeps its version hash
            state["tallies"] = {key: [n, c] for key, (n, c) in self._tallies.items()}
        return state

    def _values_data(self) -> dict[str, list[float]]:
        return {offer: [clicks, value] for offer, (clicks, value) in self._values.items()}

    def __repr__(self) -> str:
        return f"ClickModel(version={self.version!r}, updates={self._updates}, clicks={self._clicks})"


def wilson_upper(rate: float, n: float, z: float) -> float:
    """Upper end of the Wilson score interval of a rate observed over ``n`` trials.

    >>> round(wilson_upper(0.0, 40, 2.0), 3), round(wilson_upper(0.5, 4, 2.0), 3)
    (0.091, 0.854)
    """
    z2n = z * z / n
    centre = rate + z2n / 2
    spread = z * math.sqrt(max(0.0, rate * (1 - rate)) / n + z2n / (4 * n))
    return min(1.0, (centre + spread) / (1 + z2n))


def encode_snapshot(snapshot: Mapping[str, Any]) -> bytes:
    """The snapshot as compact UTF-8 JSON (what goes to Redis). Floats round-trip exactly."""
    return json.dumps(snapshot, separators=(",", ":"), allow_nan=False).encode()


def decode_snapshot(raw: bytes | str) -> ClickModel:
    """A model from :func:`encode_snapshot` bytes; raise :class:`SnapshotError` if unusable."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"click-model snapshot is not JSON ({exc}); publish it again") from None
    if not isinstance(data, dict):
        raise SnapshotError("click-model snapshot is not a JSON object; publish it again")
    return ClickModel.from_snapshot(data)


def _check_header(data: Mapping[str, Any]) -> None:
    if data.get("schema") != SNAPSHOT_SCHEMA:
        raise SnapshotError(f"not a click-model snapshot (schema {data.get('schema')!r})")
    if data.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
        raise SnapshotError(
            f"click-model snapshot layout {data.get('schema_version')!r} is not one this release reads "
            f"{READABLE_SCHEMA_VERSIONS}; "
            "run a trainer of this release so it publishes a snapshot this code can read"
        )
    if data.get("features_version") != FEATURES_VERSION:
        raise SnapshotError(
            f"click-model snapshot was trained on features version {data.get('features_version')!r}, "
            f"this code builds version {FEATURES_VERSION}; its weights would not mean anything here. "
            "Start the trainer from a fresh model"
        )


def _version(updates: int, *parts: Mapping[str, Any]) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return f"{updates:010d}-{hashlib.sha256(canonical.encode()).hexdigest()[:10]}"
