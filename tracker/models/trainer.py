"""The one writer of the click model: learns from rewards, says when to publish a snapshot.

River models are not thread-safe, so exactly one trainer owns a model (one
Faust agent on a one-partition ``rewards`` stream, or one process). It learns
each :class:`~tracker.models.rewards.Reward` once (redeliveries are recognised
by decision id) and publishes a snapshot every ``publish_every_updates``
rewards or ``publish_every_ms``, whichever comes first. Readers load
snapshots; they never see the live model.

Drift: the trainer compares the click rate of the last few hundred rewards
(a ``drift_fast``-reward moving average) with the long-run one (``drift_slow``
rewards). When the recent rate falls below ``drift_drop`` times the long-run
rate, and by more than chance explains (three standard errors), what the
model learned no longer pays: it restarts exploration and shrinks the
weights (:meth:`ClickModel.restart_exploration`), so the policy explores hard
again (``PolicyConfig.epsilon_restart``) and rediscovers what visitors like
now. Both averages then start over: the new rate is the new normal. A rising
click rate (the model learning) never restarts anything. Once the site reports
impressions, only rewards of banners seen are watched: a burst of decisions whose
impressions came too late for their window (a stalled pipeline, all "not
clicked") says nothing about tastes, and once raised false alarms. The averages are
not persisted: a restarted trainer watches afresh.

On restart the trainer starts from the last published snapshot
(:meth:`Trainer.from_snapshot`); the rewards learned after it are learned
again, which is why the stream offset to resume from belongs in the
snapshot's ``meta``, written by the shell that publishes it.

>>> from tracker.models.learner import ClickModel
>>> from tracker.models.rewards import Reward
>>> trainer = Trainer(ClickModel(), publish_every_updates=2, publish_every_ms=60_000)
>>> r = Reward("d1", "shop", "visitor-0001", "run", "home-hero", 0, 1, 0.9, None, False,
...            {"run": 1.0}, True, True, 0.0)
>>> trainer.learn(r), trainer.learn(r)  # the second is a redelivery
(True, False)
>>> trainer.should_publish(now_ms=2)  # nothing published yet: publish as soon as there is something
True
>>> trainer.publish(now_ms=2)["updates"], trainer.should_publish(now_ms=3)
(1, False)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tracker.models.learner import ClickModel
from tracker.models.rewards import Reward

if TYPE_CHECKING:
    from tracker.settings import Settings

# Standard errors (of the recent average, about 2 * drift_fast rewards' worth) a drop must exceed.
DRIFT_Z = 3.0


class Trainer:
    """Learns rewards into a :class:`ClickModel` and decides when to publish it.

    Parameters
    ----------
    model
        The model this trainer alone writes.
    publish_every_updates, publish_every_ms
        Publish after this many new rewards, or this long after the last
        publish if anything was learned since.
    learn_holdout
        Learn from holdout decisions too (the default offer, shown with
        propensity 1: valid data, and it keeps the default's estimate fresh).
    require_impression
        Skip rewards of decisions never reported as shown (for sites whose
        pages always send ``offer_impression``; otherwise an unseen banner
        counts as not clicked).
    remember
        How many decision ids are remembered to skip redelivered rewards.
    drift_fast, drift_slow
        Horizons (in rewards) of the recent and long-run click-rate averages.
    drift_drop
        Restart exploration when recent / long-run falls below this; None never does.
    """

    def __init__(
        self,
        model: ClickModel,
        *,
        publish_every_updates: int = 1_000,
        publish_every_ms: int = 10_000,
        learn_holdout: bool = True,
        require_impression: bool = False,
        remember: int = 100_000,
        drift_fast: int = 300,
        drift_slow: int = 3_000,
        drift_drop: float | None = 0.6,
        drift_shrink: float = 0.25,
    ) -> None:
        self.model = model
        self.publish_every_updates = publish_every_updates
        self.publish_every_ms = publish_every_ms
        self.learn_holdout = learn_holdout
        self.require_impression = require_impression
        self.remember = remember
        self.drift_fast = drift_fast
        self.drift_slow = drift_slow
        self.drift_drop = drift_drop
        self.drift_shrink = drift_shrink
        self.restarts = 0
        self._fast = 0.0
        self._slow = 0.0
        self._watched = 0
        # Once rewards say banners were seen, the drift watch reads those only: a burst of
        # feedback that came too late (a stalled pipeline) is not a change of tastes.
        self._impressions_reported = False
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._since_publish = 0
        self._published_at: int | None = None

    @staticmethod
    def options_from(settings: Settings) -> dict[str, Any]:
        """Constructor options from ``TRACKER_MODEL_PUBLISH_*`` settings."""
        return {
            "publish_every_updates": settings.model_publish_every_updates,
            "publish_every_ms": int(settings.model_publish_seconds * 1000),
        }

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any], **options: Any) -> Trainer:
        """Resume from a published snapshot (see :meth:`ClickModel.from_snapshot`)."""
        return cls(ClickModel.from_snapshot(snapshot), **options)

    def learn(self, reward: Reward) -> bool:
        """Learn one reward; False if it was skipped (seen before, holdout or never shown)."""
        if reward.decision_id in self._seen:
            return False
        self._seen[reward.decision_id] = None
        if len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        if (reward.holdout and not self.learn_holdout) or (self.require_impression and not reward.impressed):
            return False
        if not reward.features:
            return False  # a decision logged without features (a fallback): nothing to learn from
        self.model.learn_one(
            reward.features, reward.clicked, offer_id=reward.offer_id, value=reward.conversion_value
        )
        self._since_publish += 1
        if reward.impressed:
            self._impressions_reported = True
        if reward.impressed or not self._impressions_reported:
            self._watch(reward.reward)
        return True

    def _watch(self, reward: float) -> None:
        # Moving averages that start as plain means (no bias towards 0 while young).
        self._watched += 1
        self._fast += (reward - self._fast) / min(self._watched, self.drift_fast)
        self._slow += (reward - self._slow) / min(self._watched, self.drift_slow)
        if (
            self.drift_drop is not None
            and self._watched >= self.drift_slow
            and self._fast < self.drift_drop * self._slow
            # ... and by more than chance: at a low click rate a few hundred rewards are noisy.
            and self._slow - self._fast
            > DRIFT_Z * math.sqrt(self._slow * (1 - self._slow) / (2 * self.drift_fast))
        ):
            self.model.restart_exploration(shrink=self.drift_shrink)
            self.restarts += 1
            # Start both averages over: the rate from here on is the new normal, and no second
            # alarm can ring before drift_slow rewards of it were seen.
            self._watched = 0

    @property
    def unpublished(self) -> int:
        """Rewards learned since the last snapshot was published."""
        return self._since_publish

    def should_publish(self, *, now_ms: int) -> bool:
        """Whether enough was learned, or enough time passed, to publish a new snapshot."""
        if self._since_publish == 0:
            return False
        if self._since_publish >= self.publish_every_updates:
            return True
        return self._published_at is None or now_ms - self._published_at >= self.publish_every_ms

    def publish(self, *, now_ms: int, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The snapshot to publish now (the shell writes it, then swaps the pointer)."""
        snapshot = self.model.to_snapshot(created_ms=now_ms, meta=meta)
        self._since_publish = 0
        self._published_at = now_ms
        return snapshot
