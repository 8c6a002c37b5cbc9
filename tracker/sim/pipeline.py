"""Proof that the policy learns through the real product, not a copy of it.

The in-process simulation (:mod:`tracker.sim.learning`) calls the policy's
functions directly. This one drives the running services over HTTP, as a
site with the snippet would:

1. a simulated shopper (:mod:`tracker.sim.shoppers`) browses: their page and
   product views go to the **collector** (``POST /v1/events``) and through
   Kafka to the **stream worker**, which builds the profile in Redis;
2. the page asks the **offer API** (``GET /v1/offers``, with the page's
   type, category, device and cart) which banner to show;
3. the banner is seen: an ``offer_impression`` event with the decision id, and
   with the hidden truth's click probability an ``offer_click``;
4. the worker joins each decision with its impression and click within the
   attribution window and emits the reward; the one trainer learns from it
   and publishes snapshots to Redis; the API picks them up. Nothing here
   touches the model.

The same visits are shown to the baselines (:class:`tracker.sim.baselines.Baselines`),
which decide in-process with the context the worker would hold. The report has
the layout of the in-process one (:func:`tracker.sim.learning.summarise`):
learning curves, ratios to random and oracle at the checkpoint, drift recovery,
holdout lift, CTR by visitor type.

Times are real (on 2 cores the whole loop runs at about 33 visits/s), so frequency
caps bind within minutes rather than over a simulated day, for every policy alike.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tracker.models.catalogue import Catalogue, Offer, load_catalogue
from tracker.models.features import DecisionContext
from tracker.settings import Settings
from tracker.sim.baselines import BASELINES, Baselines
from tracker.sim.ground_truth import GroundTruth
from tracker.sim.learning import LearningConfig, Track, summarise
from tracker.sim.shoppers import SITE_ID, Crowd, Shopper, segment_purity

log = logging.getLogger(__name__)

# Under the services' 5 s keep-alive (TRACKER_KEEP_ALIVE_TIMEOUT_SECONDS, uvicorn's default for the API).
KEEPALIVE_EXPIRY_SECONDS = 4.0

# Settings that make learning visible within minutes instead of a production half hour: a 5 s
# attribution window (the simulated clicks come within 2 s) and 5 s of lateness (on 2 cores a
# busy moment delays events by seconds: with 1 s, a test suite run beside the bench made a
# tenth of the clicks miss their reward; in process, 3 s more delay changed nothing
# measurable); rewards emitted within a second of their window's end (the sweep that finishes
# due decisions runs every second, not every 30 s: with a 5 s window, rewards came up to 30 s
# late); a model published every second or 250 rewards and picked up by the API within half a
# second (from a click to a model that learned it: ~11 s, ~450 visits at 40/s; in process, 2 s
# for each or 3 s more of window made no difference beyond the spread between seeds,
# docs/BENCHMARKS.md); and no per-client rate limit (one client sends everything). Segments
# keep the production cadence (published every 30 s): published every 5 s, a visitor's
# segment, a feature of every decision the model learns from, moved under the model (0.61 of
# the oracle at 20,000 impressions against 0.70).
FAST_LEARNING: dict[str, Any] = {
    "attribution_window_seconds": 5.0,
    "attribution_lateness_seconds": 5.0,
    "session_sweep_seconds": 1.0,
    "model_publish_seconds": 1.0,
    "model_publish_every_updates": 250,
    "model_refresh_seconds": 0.5,
    "rate_limit_per_second": 0.0,
}


@dataclass(frozen=True)
class Pacing:
    """How fast the simulated site sends traffic, and how long a banner takes to be seen."""

    visits_per_second: float = 100.0
    # Visits in flight at once (a visitor's own visits always run one after the other).
    concurrency: int = 256
    # From the page's events to its offer request: the banner loads after the page.
    offer_after_seconds: float = 0.3
    # From the offer to its impression, and the longest wait before a click.
    impression_after_seconds: float = 0.2
    max_click_delay_seconds: float = 2.0


@dataclass
class _Visit:
    step: int
    shopper: Shopper
    ctx: DecisionContext
    events: list[dict[str, Any]]


class PipelineRun:
    """One run: the crowd, the truth, the baselines, and what our policy served."""

    def __init__(self, config: LearningConfig, pacing: Pacing, collector_url: str, api_url: str) -> None:
        self.config = config
        self.pacing = pacing
        self.collector_url = collector_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.catalogue: Catalogue = load_catalogue(config.catalogue_path or Settings().catalogue_path)
        self.truth = GroundTruth(self.catalogue, config.slot, seed=config.seed, drift_at=config.drift_at)
        self.crowd = Crowd(self.truth, random.Random(config.seed), new_share=config.new_share)
        self.baselines = Baselines(
            self.catalogue,
            config.slot,
            seed=config.seed,
            popular_epsilon=config.popular_epsilon,
            feedback_delay_ms=config.attribution_window_ms,
        )
        self.rng = random.Random(f"{config.seed}:ours")
        self.tracks = {name: Track() for name in ("ours", *BASELINES)}
        self.ours: dict[int, tuple[float, bool, bool]] = {}
        self.visitor_types = array("b")
        self.outcomes: dict[str, int] = {}
        self.models: set[str] = set()
        self.retries = 0
        # Visits that failed (an HTTP error, a timeout): counted as no banner, and reported.
        self.failures: dict[str, int] = {}

    async def run(self, *, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        config, pacing = self.config, self.pacing
        # The collector and the API close connections idle for 5 s (uvicorn's keep-alive); a client
        # that keeps them as long (httpx's default) now and then sends a request into one just as
        # the server closes it, and the visit fails with a ReadError. Letting go first avoids that.
        limits = httpx.Limits(
            max_connections=pacing.concurrency,
            max_keepalive_connections=pacing.concurrency,
            keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
        )
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
            self.http = http
            slots = asyncio.Semaphore(pacing.concurrency)
            last: dict[str, asyncio.Task[None]] = {}
            tasks: set[asyncio.Task[None]] = set()
            for step in range(config.impressions):
                due = started + step / pacing.visits_per_second
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await slots.acquire()
                now = _now_ms()
                shopper, ctx = self.crowd.next_visit(now)
                self.visitor_types.append(self.truth.types.index(shopper.vtype))
                self._show_baselines(step, shopper, ctx, now)
                visit = _Visit(step, shopper, ctx, list(self.crowd.last_events))
                task = asyncio.create_task(self._visit(visit, last.get(shopper.visitor_id)))
                last[shopper.visitor_id] = task
                tasks.add(task)
                task.add_done_callback(lambda t: (slots.release(), tasks.discard(t)))
                if progress is not None and (step + 1) % config.window == 0:
                    progress(step + 1)
            if tasks:
                await asyncio.gather(*tasks)
        for step in range(config.impressions):
            p, clicked, holdout = self.ours[step]
            self.tracks["ours"].add(p, clicked, holdout)
        extra = {
            "source": "pipeline",
            "pacing": vars(self.pacing),
            "seconds": round(time.monotonic() - started, 1),
            "outcomes": self.outcomes,
            "model_versions_served": len(self.models),
            "model": max(self.models) if self.models else None,
            "retries": self.retries,
            "failures": self.failures,
        }
        types = ([t.name for t in self.truth.types], self.visitor_types)
        return summarise(config, self.tracks, extra=extra, visitor_types=types)

    def segment_purity(self, segments: dict[str, int | None]) -> dict[str, Any]:
        """How well the worker's segments (visitor id to the segment in their stored profile)
        match the hidden visitor types: :func:`tracker.sim.shoppers.segment_purity`."""
        return segment_purity(self.crowd.shoppers, segments)

    def _show_baselines(self, step: int, shopper: Shopper, ctx: DecisionContext, now_ms: int) -> None:
        def truth_p(offer: Offer) -> float:
            return self._truth_p(shopper, ctx, offer.id, step)

        for name, (p, clicked) in self.baselines.show(shopper.visitor_id, ctx, now_ms, truth_p).items():
            self.tracks[name].add(p, clicked)
        self.baselines.tick(now_ms)

    def _truth_p(self, shopper: Shopper, ctx: DecisionContext, offer_id: str, step: int) -> float:
        return self.truth.p_click(
            shopper.vtype, offer_id, device=shopper.device, returning=ctx.is_returning, impressions=step
        )

    async def _visit(self, visit: _Visit, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            await self._browse_and_see(visit)
        except (httpx.HTTPError, RuntimeError) as exc:
            # Counted and reported, never silently missing from the curve: this visit showed nothing.
            kind = type(exc).__name__
            if not self.failures:
                log.warning("a simulated visit failed: %r", exc)
            self.failures[kind] = self.failures.get(kind, 0) + 1
            self.ours.setdefault(visit.step, (0.0, False, False))

    async def _browse_and_see(self, visit: _Visit) -> None:
        pacing, ctx, shopper = self.pacing, visit.ctx, visit.shopper
        await self._send(visit.events)
        await asyncio.sleep(pacing.offer_after_seconds)
        params: dict[str, Any] = {
            "site": SITE_ID,
            "visitor": shopper.visitor_id,
            "slot": self.config.slot,
            "device": shopper.device,
            "cart": ctx.cart_value,
        }
        for name, value in (
            ("page_type", ctx.page_type),
            ("category", ctx.page_category),
            ("page", ctx.page_path),
        ):
            if value is not None:
                params[name] = value
        response = await self.http.get(f"{self.api_url}/v1/offers", params=params)
        response.raise_for_status()
        body = response.json()
        self.models.add(str(body.get("model_version")))
        outcome = (
            "holdout" if body["holdout"] else ("personalised" if body["personalised"] else body["reason"])
        )
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if body.get("offer") is None:
            self.ours[visit.step] = (0.0, False, bool(body["holdout"]))
            return
        offer_id = body["offer"]["id"]
        p = self._truth_p(shopper, ctx, offer_id, visit.step)
        clicked = self.rng.random() < p
        self.ours[visit.step] = (p, clicked, bool(body["holdout"]))
        ids = {"decision_id": body["decision_id"], "offer_id": offer_id, "slot": self.config.slot}
        await asyncio.sleep(pacing.impression_after_seconds)
        seen = _now_ms()
        await self._send([self._event(shopper, ctx, "offer_impression", seen) | ids])
        if clicked:
            await asyncio.sleep(self.rng.uniform(0.0, pacing.max_click_delay_seconds))
            await self._send([self._event(shopper, ctx, "offer_click", _now_ms()) | ids])

    def _event(self, shopper: Shopper, ctx: DecisionContext, event_type: str, now_ms: int) -> dict[str, Any]:
        return {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "type": event_type,
            "ts": now_ms,
            "site_id": SITE_ID,
            "visitor_id": shopper.visitor_id,
            "session_id": shopper.session_id,
            "url": f"https://demo.shop{ctx.page_path or '/'}",
        }

    async def _send(self, events: list[dict[str, Any]]) -> None:
        """POST a batch; on 429/503 wait as told and send it again (what the snippet does)."""
        for _ in range(20):
            response = await self.http.post(f"{self.collector_url}/v1/events", json={"events": events})
            if response.status_code in (429, 503):
                self.retries += 1
                await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 5.0))
                continue
            response.raise_for_status()
            return
        raise RuntimeError(f"the collector kept answering {response.status_code}; is it overloaded?")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
