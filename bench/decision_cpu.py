"""The offer API's decision: CPU per request, and how it grows with the offers in a slot.

Everything an offer request does in Python between reading the visitor from Redis and
writing the response, in this one process, with no I/O: the stored profile parsed
(``Profile.from_dict``), the decision context, :func:`tracker.models.policy.decide` (rules,
holdout, scoring every eligible offer with the click model, exploration), the decision
record and both JSON bodies. The visitors are :mod:`offer_api_latency`'s (10,000, 70 % with
a profile, ``--visitors``), each catalogue's click model is trained as that benchmark trains
it, and each request picks a visitor at random.

Catalogues: the demo shop's (``deploy/catalogue.yaml``: what ``offer_api_latency.py``
measures), then made-up ones with ``--offers`` targeted offers in the slot (and one
default), two categories each, so that a shop can size its API for a larger catalogue. Each
slot is measured scoring its offers one by one (``decide()`` alone) and, from
:data:`tracker.models.slot_scores.AT_ONCE_FROM` offers, also all at once as the offer API
then does (``SlotScorers``: the same decisions).

Reports this process's CPU time per request (``time.process_time``), best of ``--rounds``
rounds of ``--requests``: free of what else runs on the machine, but a tight loop, so its
code and data are warmer than between a server's system calls.

Usage: ``.venv/bin/python bench/decision_cpu.py [--offers 8,16,32,128] [--requests 5000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import orjson
from offer_api_latency import CATEGORIES, SITE, SLOT, bench_profiles, train_click_model

from tracker.models.catalogue import Catalogue, load_catalogue, parse_catalogue
from tracker.models.features import context_from_profile
from tracker.models.learner import ClickModel
from tracker.models.policy import PolicyConfig, decide
from tracker.models.profile import Profile
from tracker.models.slot_scores import AT_ONCE_FROM, SlotScorers
from tracker.settings import Settings


def made_up_catalogue(offers: int, seed: int = 3) -> Catalogue:
    """``offers`` targeted offers in :data:`SLOT`, two categories each, and its default."""
    rng = random.Random(seed)
    entries: list[dict[str, Any]] = [
        {"id": "welcome", "slots": [SLOT], "title": "Welcome", "link": "/", "default": True}
    ]
    for n in range(offers):
        entries.append(
            {
                "id": f"offer-{n:04d}",
                "slots": [SLOT],
                "categories": rng.sample(CATEGORIES, 2),
                "title": f"Offer {n}",
                "link": f"/o/{n}",
                "margin": round(rng.random(), 2),
                "priority": rng.randrange(3),
            }
        )
    return parse_catalogue({"offers": entries})


def cpu_per_request(
    catalogue: Catalogue,
    model: ClickModel,
    stored: list[bytes | None],
    settings: Settings,
    requests: int,
    rounds: int,
    *,
    at_once: bool,
) -> tuple[float, float]:
    """Best-of-``rounds`` CPU per request: (the decision alone, the whole sync path), in µs.
    ``at_once``: the slot's offers scored at once, as the offer API does (``SlotScorers``)."""
    scorers = SlotScorers() if at_once else None
    config = PolicyConfig.from_settings(settings)
    rng = random.Random(11)
    picks = [rng.choice(stored) for _ in range(requests)]
    half_life = settings.interest_half_life_seconds
    best_decide = best_total = float("inf")
    for _ in range(rounds):
        now_ms = int(time.time() * 1000)
        contexts = [
            context_from_profile(
                Profile.from_dict(orjson.loads(raw)) if raw is not None else None,
                now_ms=now_ms,
                half_life_seconds=half_life,
            )
            for raw in picks
        ]
        started = time.process_time()
        for n, ctx in enumerate(contexts):
            decide(
                catalogue, SLOT, ctx, model=model, rng=rng, site_id=SITE, visitor_id=f"bench-{n:08d}",
                config=config, now_ms=now_ms,
                scorer=scorers.get(model, catalogue.offers_for_slot(SLOT)) if scorers else None,
            )  # fmt: skip
        best_decide = min(best_decide, (time.process_time() - started) / requests * 1e6)

        started = time.process_time()
        for n, raw in enumerate(picks):
            profile = Profile.from_dict(orjson.loads(raw)) if raw is not None else None
            ctx = context_from_profile(profile, now_ms=now_ms, half_life_seconds=half_life)
            decision = decide(
                catalogue, SLOT, ctx, model=model, rng=rng, site_id=SITE, visitor_id=f"bench-{n:08d}",
                config=config, now_ms=now_ms,
                scorer=scorers.get(model, catalogue.offers_for_slot(SLOT)) if scorers else None,
            )  # fmt: skip
            orjson.dumps(decision.log_record())
            orjson.dumps({"offer": decision.offer.id if decision.offer else None, "reason": decision.reason})
        best_total = min(best_total, (time.process_time() - started) / requests * 1e6)
    return best_decide, best_total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--offers", default="8,16,32,128", help="targeted offers in the made-up catalogues")
    parser.add_argument("--visitors", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    profiles = bench_profiles(args.visitors, settings)
    stored: list[bytes | None] = [
        orjson.dumps(profiles[f"bench-{n:08d}"].to_dict()) if f"bench-{n:08d}" in profiles else None
        for n in range(args.visitors)
    ]
    catalogues = [("demo shop", load_catalogue(settings.catalogue_path))]
    catalogues += [(f"made up, {n} targeted", made_up_catalogue(n)) for n in map(int, args.offers.split(","))]
    known = [Profile.from_dict(orjson.loads(raw)) for raw in stored if raw is not None]
    print(f"CPU per offer request in process (best of {args.rounds} rounds of {args.requests:,}):")
    print("| catalogue | offers in the slot | scoring | decide() | profile, decision, record and JSON |")
    print("| --- | --- | --- | --- | --- |")
    for name, catalogue in catalogues:
        in_slot = len(catalogue.offers_for_slot(SLOT))
        model = train_click_model(catalogue, known, settings)
        # The API scores a slot at once from AT_ONCE_FROM offers (one by one below: cheaper there).
        for at_once in (False, True) if in_slot >= AT_ONCE_FROM else (False,):
            decide_us, total_us = cpu_per_request(
                catalogue, model, stored, settings, args.requests, args.rounds, at_once=at_once
            )
            scoring = "the slot at once (the API's)" if at_once else "offer by offer"
            print(f"| {name} | {in_slot} | {scoring} | {decide_us:.1f} µs | {total_us:.1f} µs |", flush=True)


if __name__ == "__main__":
    main()
