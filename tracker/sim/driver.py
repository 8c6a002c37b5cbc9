"""Drive simulated visitors through a running collector and offer API, and report what changes."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from tracker.models.catalogue import Catalogue, load_catalogue
from tracker.settings import Settings
from tracker.sim.visitors import SimVisitor

SITE_ID = "demo"
SLOT = "home-hero"


@dataclass
class OfferSeen:
    offer_id: str | None
    personalised: bool
    categories: tuple[str, ...]
    decision_id: str | None = None
    holdout: bool = False  # the visitor is in the control group: always the default

    def fits(self, category: str) -> bool:
        return self.personalised and category in self.categories


class ProductClient:
    """The two HTTP calls a site makes: send events, ask for an offer."""

    def __init__(self, http: httpx.AsyncClient, collector_url: str, api_url: str, catalogue: Catalogue):
        self.http = http
        self.collector_url = collector_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.catalogue = catalogue

    async def send(self, events: list[dict], *, attempts: int = 10) -> None:
        """POST a batch, retrying on 503/429 after Retry-After, as the snippet does."""
        for _ in range(attempts):
            response = await self.http.post(f"{self.collector_url}/v1/events", json={"events": events})
            if response.status_code in (429, 503):
                await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 5.0))
                continue
            response.raise_for_status()
            return
        raise RuntimeError(f"collector kept answering {response.status_code} after {attempts} attempts")

    async def offer(self, visitor: SimVisitor, slot: str = SLOT) -> OfferSeen:
        response = await self.http.get(
            f"{self.api_url}/v1/offers",
            params={"site": visitor.site_id, "visitor": visitor.visitor_id, "slot": slot},
        )
        response.raise_for_status()
        body = response.json()
        offer_id = body["offer"]["id"] if body.get("offer") else None
        offer = self.catalogue.get(offer_id) if offer_id else None
        return OfferSeen(
            offer_id,
            bool(body.get("personalised")),
            tuple(offer.categories) if offer else (),
            body.get("decision_id"),
            bool(body.get("holdout")),
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


async def first_wave(
    client: ProductClient,
    visitors: list[SimVisitor],
    categories: list[str],
    *,
    events_per_visitor: int,
    wait_seconds: float,
    echo: Callable[[str], None],
) -> int:
    """Each visitor browses a little; report how its banner changes. Returns how many now fit."""
    before = {v.visitor_id: await client.offer(v) for v in visitors}
    sent_at: dict[str, float] = {}
    for visitor in visitors:
        events = [visitor.next_event(categories, now_ms=_now_ms()) for _ in range(events_per_visitor)]
        await client.send(events)
        sent_at[visitor.visitor_id] = time.monotonic()
    echo(f"{len(visitors)} simulated visitors each sent {events_per_visitor} events; watching their banners:")
    pending = {v.visitor_id: v for v in visitors}
    fitted = 0
    deadline = time.monotonic() + wait_seconds
    while pending and time.monotonic() < deadline:
        for visitor_id, visitor in list(pending.items()):
            now = await client.offer(visitor)
            if now.holdout:
                echo(f"  {visitor_id}  browses {visitor.favourite:<12} in the holdout group: {now.offer_id}")
                del pending[visitor_id]
                continue
            if now.fits(visitor.favourite):
                was = before[visitor_id].offer_id
                echo(
                    f"  {visitor_id}  browses {visitor.favourite:<12} {was} -> {now.offer_id}"
                    f"  ({(time.monotonic() - sent_at[visitor_id]) * 1000:.0f} ms after its events)"
                )
                del pending[visitor_id]
                fitted += 1
        await asyncio.sleep(0.02)
    for visitor in pending.values():
        still = before[visitor.visitor_id].offer_id
        echo(f"  {visitor.visitor_id}  browses {visitor.favourite:<12} still {still}")
    fresh = SimVisitor.create(SITE_ID, categories, random.Random())
    echo(f"A brand-new visitor still gets the default: {(await client.offer(fresh)).offer_id}")
    return fitted


# How likely a simulated visitor clicks a banner it sees: about what it browses, often;
# anything else, rarely. Enough for the live view's CTR and for the trainer to learn from.
CLICK_IF_FITS = 0.25
CLICK_OTHERWISE = 0.03
# Share of simulated page events on which the page also shows the slot's banner.
BANNER_SHARE = 0.5


@dataclass
class ClickTally:
    """Banners seen and clicked, personalised or not, since the last report."""

    shown: dict[bool, int]
    clicked: dict[bool, int]

    @classmethod
    def empty(cls) -> ClickTally:
        return cls({True: 0, False: 0}, {True: 0, False: 0})

    def line(self) -> str:
        def ctr(personalised: bool) -> str:
            shown = self.shown[personalised]
            return f"{self.clicked[personalised] / shown:.0%} of {shown}" if shown else "-"

        return f"CTR personalised {ctr(True)}, other {ctr(False)}"


def feedback_events(
    visitor: SimVisitor, seen: OfferSeen, rng: random.Random, *, now_ms: int, slot: str = SLOT
) -> tuple[list[dict], bool]:
    """What the snippet sends for a banner the visitor saw: its impression, and a click with
    the simulated visitor's probability. Returns the events and whether it clicked."""
    if seen.offer_id is None or seen.decision_id is None:
        return [], False
    ids = {"decision_id": seen.decision_id, "offer_id": seen.offer_id, "slot": slot}
    url = f"https://demo.shop/c/{visitor.favourite}"
    events = [{**visitor.base_event("offer_impression", now_ms, url), **ids}]
    fits = visitor.favourite in seen.categories
    clicked = rng.random() < (CLICK_IF_FITS if fits else CLICK_OTHERWISE)
    if clicked:
        events.append({**visitor.base_event("offer_click", now_ms + 1, url), **ids})
    return events, clicked


async def steady_traffic(
    client: ProductClient,
    population: list[SimVisitor],
    categories: list[str],
    rng: random.Random,
    *,
    rate: float,
    duration: float,
    echo: Callable[[str], None],
    report_every: float = 10.0,
) -> None:
    """Gentle ongoing traffic: visitors come back, new ones arrive, some change their mind."""
    started = last_report = time.monotonic()
    sent = 0
    tally = ClickTally.empty()
    while duration <= 0 or time.monotonic() - started < duration:
        if rng.random() < 0.1 or not population:
            population.append(SimVisitor.create(SITE_ID, categories, rng))
            del population[:-200]
        visitor = rng.choice(population)
        if rng.random() < 0.02:
            visitor.favourite = rng.choice(categories)  # tastes drift; offers should follow
        events = [visitor.next_event(categories, now_ms=_now_ms())]
        if rng.random() < BANNER_SHARE:
            seen = await client.offer(visitor)
            feedback, clicked = feedback_events(visitor, seen, rng, now_ms=_now_ms())
            if feedback:
                tally.shown[seen.personalised] += 1
                tally.clicked[seen.personalised] += clicked
            events += feedback
        await client.send(events)
        sent += len(events)
        if time.monotonic() - last_report >= report_every:
            sample = rng.sample(population, min(20, len(population)))
            seen = [await client.offer(v) for v in sample]
            fit = sum(s.fits(v.favourite) for s, v in zip(seen, sample, strict=True))
            elapsed = time.monotonic() - last_report
            echo(
                f"[{time.strftime('%H:%M:%S')}] {sent / elapsed:5.1f} events/s sent; "
                f"{fit}/{len(sample)} sampled visitors see an offer for what they browse; "
                f"{tally.line()}"
            )
            sent, last_report, tally = 0, time.monotonic(), ClickTally.empty()
        await asyncio.sleep(rng.expovariate(rate))


async def run_simulation(
    settings: Settings,
    *,
    collector_url: str,
    api_url: str,
    visitors: int,
    rate: float,
    duration: float,
    echo: Callable[[str], None] = print,
    seed: int | None = None,
    steady: bool = True,
) -> int:
    """First wave (show offers adapting), then, if ``steady``, gentle traffic for ``duration``
    seconds (0: until cancelled). Returns how many first-wave visitors got a fitting offer."""
    catalogue = load_catalogue(settings.catalogue_path)
    categories = sorted({c for offer in catalogue.offers for c in offer.categories})
    rng = random.Random(seed)
    population = [
        SimVisitor.create(SITE_ID, categories, rng, favourite=categories[i % len(categories)])
        for i in range(visitors)
    ]
    async with httpx.AsyncClient(timeout=10.0) as http:
        client = ProductClient(http, collector_url, api_url, catalogue)
        fitted = await first_wave(
            client, population, categories, events_per_visitor=6, wait_seconds=60, echo=echo
        )
        echo(f"{fitted}/{visitors} visitors now see an offer for the category they browse.")
        if steady:
            await steady_traffic(client, population, categories, rng, rate=rate, duration=duration, echo=echo)
    return fitted
