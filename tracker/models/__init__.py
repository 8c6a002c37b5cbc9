"""Pure profile, ranking and learning logic: no Kafka, Redis or HTTP here.

The names below are re-exported lazily (PEP 562): ``from tracker.models import
decide`` imports :mod:`tracker.models.policy` on first use, so a process that
only needs profiles does not pay for importing River.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # Offers and their rules
    "Catalogue": "catalogue",
    "Offer": "catalogue",
    "FrequencyCaps": "catalogue",
    "parse_catalogue": "catalogue",
    "load_catalogue": "catalogue",
    "ImpressionCounts": "caps",
    "Exclusion": "eligibility",
    "exclusion": "eligibility",
    "split_eligible": "eligibility",
    # What the decision knows
    "DecisionContext": "features",
    "context_from_profile": "features",
    "features_for": "features",
    "FEATURES_VERSION": "features",
    # Deciding
    "PolicyConfig": "policy",
    "Decision": "policy",
    "Candidate": "policy",
    "decide": "policy",
    "fallback_decision": "policy",
    "action_probabilities": "policy",
    "SlotScorer": "slot_scores",
    "SlotScorers": "slot_scores",
    "in_holdout": "holdout",
    "Choice": "ranking",
    "choose_offer": "ranking",
    "choose_default": "ranking",
    # Learning
    "ClickModel": "learner",
    "SnapshotError": "learner",
    "encode_snapshot": "learner",
    "decode_snapshot": "learner",
    "Trainer": "trainer",
    "AttributionConfig": "rewards",
    "Feedback": "rewards",
    "Reward": "rewards",
    "VisitorRewards": "rewards",
    # Evaluating
    "Logged": "offline",
    "Estimate": "offline",
    "ips": "offline",
    "snips": "offline",
    "deterministic": "offline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tracker.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tracker.models.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
