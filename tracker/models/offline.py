"""Offline evaluation: estimate a candidate policy's click rate from logged decisions.

Every decision is logged with the probability the live policy gave the shown
offer (its propensity). A candidate policy that would have shown offer ``a``
in context ``x`` with probability ``pi(a|x)`` can then be scored on the log
without showing it to anyone:

- **IPS** (inverse propensity scoring): the mean of ``w * r`` with
  ``w = pi(a|x) / propensity``. Unbiased when propensities are exact and
  every offer the candidate may pick had a chance under the logging policy;
  its variance grows when the two policies disagree.
- **SNIPS** (self-normalised IPS): ``sum(w * r) / sum(w)``. Slightly biased,
  much lower variance, and never outside ``[min r, max r]``.

Confidence intervals are normal approximations: the standard error of the
mean for IPS, the delta method for SNIPS. ``effective_n`` (``(sum w)^2 /
sum w^2``) says how many logged decisions the estimate is really worth: far
below ``n`` means the candidate rarely agrees with the log, and the interval
is wide for a reason.

>>> logs = [Logged(DecisionContext(), ("a", "b"), "a", 0.5, 1.0),
...         Logged(DecisionContext(), ("a", "b"), "b", 0.5, 0.0)]
>>> always_a = deterministic(lambda log: "a")
>>> ips(logs, always_a).value, snips(logs, always_a).value
(1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tracker.models.features import DecisionContext

# The target policy: for a logged decision, its probability of each eligible offer.
TargetPolicy = Callable[["Logged"], Mapping[str, float]]


@dataclass(frozen=True, slots=True)
class Logged:
    """One logged decision with its outcome."""

    context: DecisionContext
    eligible: tuple[str, ...]
    action: str
    propensity: float
    reward: float

    @classmethod
    def from_record(cls, decision: Mapping[str, Any], reward: float) -> Logged:
        """From a ``decisions`` record (:meth:`tracker.models.policy.Decision.log_record`) and its reward."""
        return cls(
            context=DecisionContext.from_dict(decision["context"]),
            eligible=tuple(decision["eligible"]),
            action=decision["offer_id"],
            propensity=float(decision["propensity"]),
            reward=float(reward),
        )


@dataclass(frozen=True, slots=True)
class Estimate:
    """A policy value estimate with its confidence interval."""

    value: float
    low: float
    high: float
    n: int
    effective_n: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, float]:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "effective_n": self.effective_n,
        }


def deterministic(choose: Callable[[Logged], str]) -> TargetPolicy:
    """Wrap a policy that picks one offer into a probability distribution."""
    return lambda log: {choose(log): 1.0}


def ips(logs: Iterable[Logged], target: TargetPolicy, *, z: float = 1.96) -> Estimate:
    """Inverse-propensity estimate of ``target``'s mean reward, with a normal CI (``z`` = 1.96: 95 %)."""
    weights, rewards = _weights(logs, target)
    n = len(weights)
    terms = [w * r for w, r in zip(weights, rewards, strict=True)]
    mean = sum(terms) / n
    variance = sum((t - mean) ** 2 for t in terms) / (n - 1) if n > 1 else math.inf
    half = z * math.sqrt(variance / n)
    return Estimate(mean, mean - half, mean + half, n, _effective_n(weights))


def snips(logs: Iterable[Logged], target: TargetPolicy, *, z: float = 1.96) -> Estimate:
    """Self-normalised estimate of ``target``'s mean reward, with a delta-method CI."""
    weights, rewards = _weights(logs, target)
    n = len(weights)
    total = sum(weights)
    if total == 0:
        return Estimate(math.nan, -math.inf, math.inf, n, 0.0)
    value = sum(w * r for w, r in zip(weights, rewards, strict=True)) / total
    # Var(SNIPS) ~ sum w_i^2 (r_i - V)^2 / (sum w)^2  (delta method on a ratio of means).
    variance = sum((w * (r - value)) ** 2 for w, r in zip(weights, rewards, strict=True)) / total**2
    half = z * math.sqrt(variance * n / (n - 1)) if n > 1 else math.inf
    return Estimate(value, value - half, value + half, n, _effective_n(weights))


def _weights(logs: Iterable[Logged], target: TargetPolicy) -> tuple[Sequence[float], Sequence[float]]:
    weights: list[float] = []
    rewards: list[float] = []
    for log in logs:
        if not 0.0 < log.propensity <= 1.0:
            raise ValueError(
                f"logged propensity {log.propensity} for offer {log.action!r} is not in (0, 1]; "
                "decisions without an exact propensity cannot be used for offline evaluation"
            )
        weights.append(target(log).get(log.action, 0.0) / log.propensity)
        rewards.append(log.reward)
    if not weights:
        raise ValueError("no logged decisions to evaluate on")
    return weights, rewards


def _effective_n(weights: Sequence[float]) -> float:
    squares = sum(w * w for w in weights)
    return sum(weights) ** 2 / squares if squares else 0.0
