"""How a simulated visitor browses: pure, seeded, no HTTP.

A visitor has a favourite category and mostly looks at products in it, with
some wandering. Events are plain dicts in the wire format of
:mod:`tracker.schema`, so the collector validates them like any browser's.

>>> import random
>>> v = SimVisitor.create("demo", ["shoes", "books"], random.Random(7), favourite="books")
>>> event = v.next_event(["shoes", "books"], now_ms=1_763_900_000_000)
>>> event["site_id"], event["visitor_id"] == v.visitor_id
('demo', True)
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

PRODUCTS_PER_CATEGORY = 8


@dataclass
class SimVisitor:
    site_id: str
    visitor_id: str
    favourite: str
    rng: random.Random
    # Probability that a product view is in the favourite category.
    loyalty: float = 0.8

    @classmethod
    def create(
        cls, site_id: str, categories: list[str], rng: random.Random, *, favourite: str | None = None
    ) -> SimVisitor:
        visitor_id = f"sim-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}"
        return cls(site_id, visitor_id, favourite or rng.choice(categories), rng)

    def base_event(self, event_type: str, now_ms: int, url: str) -> dict[str, Any]:
        """The fields every event of this visitor carries (a fresh event id each time)."""
        return {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "type": event_type,
            "ts": now_ms,
            "site_id": self.site_id,
            "visitor_id": self.visitor_id,
            "url": url,
        }

    def next_event(self, categories: list[str], *, now_ms: int) -> dict[str, Any]:
        """The next thing this visitor does: mostly product views, sometimes a category page."""
        category = self.favourite if self.rng.random() < self.loyalty else self.rng.choice(categories)
        if self.rng.random() < 0.2:
            event = self.base_event("page_view", now_ms, f"https://demo.shop/c/{category}")
            event["category"] = category
            return event
        product = f"{category}-{self.rng.randrange(PRODUCTS_PER_CATEGORY):02d}"
        event = self.base_event("product_view", now_ms, f"https://demo.shop/p/{product}")
        event.update(product_id=product, category=category, price=round(self.rng.uniform(5, 250), 2))
        return event
