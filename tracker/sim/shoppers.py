"""Simulated shoppers for the learning simulator: they browse, build real profiles, and ask for offers.

Each visit is one to three browsing events in the wire format of
:mod:`tracker.schema`, validated by :func:`~tracker.schema.parse_event` and
folded into a real :class:`~tracker.models.profile.Profile` by
:func:`~tracker.models.profile.apply_event`, exactly as the stream worker
does; then the page asks for an offer with the
:class:`~tracker.models.features.DecisionContext` the offer API would build.

The segment a shopper falls in is the one the stream worker would give them:
as the worker does (:mod:`tracker.streams.segments`, at the default settings),
a :class:`~tracker.models.segments.SegmentLearner` learns from one profile
update in ``segment_sample_every``, its snapshot is published every
``segment_publish_seconds`` (of simulated time), and each profile is assigned
to the nearest centroid of the current snapshot with
:func:`~tracker.models.segments.assign` (no segment before the first
snapshot). Nothing tells the clustering the hidden types:
:func:`segment_purity` measures how well it finds them.

>>> import random
>>> from tracker.models.catalogue import load_catalogue
>>> from tracker.settings import Settings
>>> from tracker.sim.ground_truth import GroundTruth
>>> truth = GroundTruth(load_catalogue(Settings().catalogue_path), "home-hero", seed=1)
>>> crowd = Crowd(truth, random.Random(4))
>>> shopper, ctx = crowd.next_visit(1_763_900_000_000)
>>> shopper.vtype.name, ctx.page_type, ctx.is_returning
('electronics-lover', 'product', False)
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tracker.models.features import DecisionContext, context_from_profile
from tracker.models.profile import Profile, apply_event
from tracker.models.segments import SegmentLearner, assign, profile_features
from tracker.schema import parse_event
from tracker.settings import Settings
from tracker.sim.ground_truth import GroundTruth, VisitorType

SITE_ID = "demo"
# The worker's segment learner, at the default settings (its seed and halflife are the
# learner host's: tracker.streams.segments).
SEGMENT_CLUSTERS: int = Settings.model_fields["segment_clusters"].default
SEGMENT_SAMPLE_EVERY: int = Settings.model_fields["segment_sample_every"].default
SEGMENT_PUBLISH_MS = int(Settings.model_fields["segment_publish_seconds"].default * 1000)
SEGMENT_HALFLIFE = 0.05
SEGMENT_SEED = 42
SESSION_GAP_MS = 30 * 60 * 1000
HALF_LIFE_SECONDS = 3 * 24 * 3600.0
PRODUCTS_PER_CATEGORY = 12


@dataclass(slots=True)
class Shopper:
    """One simulated visitor, with the profile the stream worker would hold for them."""

    visitor_id: str
    vtype: VisitorType
    device: str
    profile: Profile
    session_id: str = ""
    last_at: int = 0
    sessions: int = 0
    session_views: int = 0
    cart_value: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


class Crowd:
    """Where visits come from: new shoppers arrive, known ones come back.

    Parameters
    ----------
    truth
        The visitor types to draw shoppers from.
    rng
        The only source of randomness (browsing, arrivals, devices).
    new_share
        Probability that a visit is a new shopper's first.
    max_shoppers
        Known shoppers kept (the oldest stop coming back beyond it).
    """

    def __init__(
        self, truth: GroundTruth, rng: random.Random, *, new_share: float = 0.3, max_shoppers: int = 3000
    ) -> None:
        self.truth = truth
        self.rng = rng
        self.new_share = new_share
        self.max_shoppers = max_shoppers
        self.shoppers: list[Shopper] = []
        self._categories = sorted({t.favourite for t in truth.types})
        # The raw events of the latest visit, for drivers that send them to a real collector.
        self.last_events: list[dict[str, object]] = []
        # The segment learner and its latest published snapshot, as in the stream worker.
        self.segments = SegmentLearner(
            clusters=SEGMENT_CLUSTERS, halflife=SEGMENT_HALFLIFE, seed=SEGMENT_SEED
        )
        self.segment_snapshot: dict[str, Any] | None = None
        self._published_at = 0
        self._published_samples = 0

    def next_visit(self, now_ms: int) -> tuple[Shopper, DecisionContext]:
        """A shopper browses a little at ``now_ms``; return them and the context of their page."""
        rng = self.rng
        if not self.shoppers or rng.random() < self.new_share:
            shopper = self._new_shopper()
        else:
            shopper = rng.choice(self.shoppers)
        if shopper.last_at == 0 or now_ms - shopper.last_at > SESSION_GAP_MS:
            shopper.sessions += 1
            shopper.session_id = f"s{rng.getrandbits(64):016x}"
            shopper.session_views = 0
            shopper.cart_value = 0.0
        shopper.last_at = now_ms

        self.last_events = []
        page_type, category, path = "home", None, "/"
        for _ in range(rng.randint(1, 3)):
            page_type, category, path = self._browse(shopper, now_ms)
        # What the stream worker would have set: the segment in the current snapshot.
        profile = shopper.profile
        self._publish_segments(now_ms)
        snapshot = self.segment_snapshot
        if snapshot is not None:
            profile.segment = assign(snapshot, profile_features(profile))
            profile.segment_version = snapshot["version"]
        return shopper, context_from_profile(
            profile,
            now_ms=now_ms,
            half_life_seconds=HALF_LIFE_SECONDS,
            device=shopper.device,
            page_type=page_type,
            page_path=path,
            page_category=category,
            cart_value=shopper.cart_value,
        )

    def _publish_segments(self, now_ms: int) -> None:
        """Publish the learner's snapshot every ``SEGMENT_PUBLISH_MS``, if it learned meanwhile."""
        if now_ms - self._published_at < SEGMENT_PUBLISH_MS:
            return
        self._published_at = now_ms
        learner = self.segments
        if learner.samples == self._published_samples:
            return
        version = 1 if self.segment_snapshot is None else self.segment_snapshot["version"] + 1
        self.segment_snapshot = learner.snapshot(version=version, created_at=now_ms)
        self._published_samples = learner.samples

    def _new_shopper(self) -> Shopper:
        rng = self.rng
        vtype = rng.choice(self.truth.types)
        visitor_id = f"sim-{rng.getrandbits(64):016x}"
        device = "mobile" if rng.random() < vtype.mobile_share else "desktop"
        shopper = Shopper(visitor_id, vtype, device, Profile.new(SITE_ID, visitor_id))
        self.shoppers.append(shopper)
        if len(self.shoppers) > self.max_shoppers:
            del self.shoppers[0]
        return shopper

    def _browse(self, shopper: Shopper, now_ms: int) -> tuple[str, str, str]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.7:
            category = shopper.vtype.favourite
        elif roll < 0.9:
            category = shopper.vtype.second
        else:
            category = rng.choice(self._categories)
        base = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "ts": now_ms,
            "site_id": SITE_ID,
            "visitor_id": shopper.visitor_id,
            "session_id": shopper.session_id,
        }
        if rng.random() < 0.3:
            path = f"/c/{category}"
            raw = base | {"type": "page_view", "url": f"https://demo.shop{path}", "category": category}
            page_type = "category"
        else:
            product = f"{category}-{rng.randrange(PRODUCTS_PER_CATEGORY):02d}"
            path = f"/p/{product}"
            price = round(rng.uniform(5, 250), 2)
            if rng.random() < 0.1:
                raw = base | {
                    "type": "add_to_cart",
                    "product_id": product,
                    "category": category,
                    "price": price,
                }
                shopper.cart_value = round(shopper.cart_value + price, 2)
            else:
                raw = base | {
                    "type": "product_view",
                    "product_id": product,
                    "category": category,
                    "price": price,
                }
            raw["url"] = f"https://demo.shop{path}"
            page_type = "product"
        self.last_events.append(raw)
        apply_event(
            shopper.profile,
            parse_event(raw),
            received_at=now_ms,
            half_life_seconds=HALF_LIFE_SECONDS,
            dedupe_window=8,
        )
        if shopper.profile.events_seen % SEGMENT_SAMPLE_EVERY == 0:
            self.segments.learn(profile_features(shopper.profile))
        shopper.session_views += 1
        return page_type, category, path


def segment_purity(shoppers: Iterable[Shopper], segments: Mapping[str, int | None]) -> dict[str, Any]:
    """How well segments match the hidden visitor types of ``shoppers``.

    ``segments`` maps visitor id to a segment (visitors not among ``shoppers`` are ignored). For
    each segment: its shoppers, its most common hidden type and that type's share (1.0: the
    segment is one type); ``weighted_purity`` is the mean share weighted by shoppers.

    >>> from tracker.sim.ground_truth import VisitorType
    >>> a, b = (VisitorType(name, name, "x", 0.5) for name in ("a", "b"))
    >>> crowd = [Shopper(f"v{i}", t, "mobile", Profile.new(SITE_ID, f"v{i}"))
    ...          for i, t in enumerate((a, a, b, b))]
    >>> segment_purity(crowd, {"v0": 0, "v1": 0, "v2": 0, "v3": None})["weighted_purity"]
    0.667
    """
    types = {s.visitor_id: s.vtype.name for s in shoppers}
    members: dict[str, dict[str, int]] = {}
    unsegmented = 0
    for visitor_id, segment in segments.items():
        if visitor_id not in types:
            continue
        if segment is None:
            unsegmented += 1
            continue
        counts = members.setdefault(str(segment), {})
        counts[types[visitor_id]] = counts.get(types[visitor_id], 0) + 1
    by_segment = {
        segment: {"shoppers": sum(c.values()), "top_type": max(c, key=c.__getitem__),
                  "purity": round(max(c.values()) / sum(c.values()), 3)}
        for segment, c in sorted(members.items())
    }  # fmt: skip
    segmented = sum(v["shoppers"] for v in by_segment.values())
    purity = (
        round(sum(v["purity"] * v["shoppers"] for v in by_segment.values()) / segmented, 3)
        if segmented
        else None
    )
    return {"by_segment": by_segment, "unsegmented": unsegmented, "weighted_purity": purity}
