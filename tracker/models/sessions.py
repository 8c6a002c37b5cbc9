"""Server-side sessions: where a visit starts and ends, what happened in it, where it came from.

Pure logic. A session is a run of one visitor's events with no gap longer than
``gap_ms`` in *event time* (the client timestamp clamped to the server receive
time). A page view that arrives from a different campaign or external
referrer than the session's starts a new session when ``split_on_source``
is on (what web analytics tools do). Events are folded in arrival order; an
event up to one gap *earlier* than the session's start still belongs to it
(out of order within a bound); an even older one is late and joins no session.

The stream worker keeps the open session inside the visitor's table state
(:mod:`tracker.models.visitor_state`) and emits :meth:`Session.record` on the
``sessions`` topic when the session closes.

>>> from tracker.schema import parse_event
>>> def pv(ts, url="https://shop.example/", ref=None):
...     return parse_event({"event_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "type": "page_view",
...                         "ts": ts, "site_id": "shop", "visitor_id": "visitor-01", "url": url,
...                         "referrer": ref})
>>> rules = SessionRules(gap_ms=30 * 60_000)
>>> s = Session.begin("a1", pv(1_000_000_000_000, ref="https://www.google.com/"), 1_000_000_000_000)
>>> s.referrer_class
'search'
>>> rules.boundary(s, pv(1_000_000_000_000 + 10 * 60_000), 1_000_000_000_000 + 10 * 60_000) is None
True
>>> rules.boundary(s, pv(1_000_000_000_000 + 45 * 60_000), 1_000_000_000_000 + 45 * 60_000)
'gap'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tracker.schema import Event, EventType, SessionRecord, event_field

# Bounds that keep a session (and so the table state) small whatever a visitor does.
MAX_SESSION_PRODUCTS = 50
MAX_SESSION_CATEGORIES = 20
# Landing pages are stored without query or fragment (they may carry personal data).
MAX_LANDING_CHARS = 512

SEARCH_ENGINES = ("google.", "bing.", "duckduckgo.", "yahoo.", "baidu.", "yandex.", "ecosia.", "qwant.")
SOCIAL_SITES = (
    "facebook.",
    "instagram.",
    "t.co",
    "twitter.",
    "x.com",
    "linkedin.",
    "pinterest.",
    "reddit.",
    "tiktok.",
    "youtube.",
    "lnkd.in",
)
PAID_MEDIUMS = ("cpc", "ppc", "paid", "paidsearch", "display", "cpm", "paid_social")
CLICK_IDS = ("gclid", "fbclid", "msclkid", "dclid", "ttclid")

REFERRER_CLASSES = ("direct", "internal", "search", "social", "email", "paid", "campaign", "referral")


def _host(url: str | None) -> str:
    if not url:
        return ""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _same_site(a: str, b: str) -> bool:
    """``www.shop.example`` and ``shop.example`` are one site."""
    return bool(a) and a.removeprefix("www.") == b.removeprefix("www.")


def _query(url: str | None) -> dict[str, str]:
    if not url or "?" not in url:
        return {}  # no query string (most URLs): what parsing would give, without parsing
    try:
        return {k.lower(): v[0].lower() for k, v in parse_qs(urlsplit(url).query).items() if v}
    except ValueError:
        return {}


def referrer_class(url: str | None, referrer: str | None) -> str:
    """Where a visit came from: one of :data:`REFERRER_CLASSES`.

    Campaign tags in the page URL win over the referrer, as in web analytics.

    >>> referrer_class("https://shop.example/?utm_source=news&utm_medium=email", None)
    'email'
    >>> referrer_class("https://shop.example/?gclid=abc", "https://www.google.com/")
    'paid'
    >>> referrer_class("https://shop.example/p/1", "https://www.bing.com/search?q=x")
    'search'
    >>> referrer_class("https://shop.example/p/1", "https://shop.example/")
    'internal'
    >>> referrer_class("https://shop.example/", None)
    'direct'
    """
    query = _query(url)
    medium = query.get("utm_medium", "")
    if any(k in query for k in CLICK_IDS) or medium in PAID_MEDIUMS:
        return "paid"
    if medium == "email" or query.get("utm_source", "") in ("email", "newsletter"):
        return "email"
    if medium == "social":
        return "social"
    if "utm_source" in query or "utm_campaign" in query:
        return "campaign"
    ref_host = _host(referrer)
    if not ref_host:
        return "direct"
    if _same_site(ref_host, _host(url)):
        return "internal"
    if any(ref_host.startswith(e) or f".{e}" in ref_host for e in SEARCH_ENGINES):
        return "search"
    if any(ref_host == s or ref_host.startswith(s) or f".{s}" in ref_host for s in SOCIAL_SITES):
        return "social"
    return "referral"


def source_key(url: str | None, referrer: str | None) -> str | None:
    """What identifies a new traffic source on a page view: campaign tags, a click id, or an
    external referrer's host. None for internal navigation and direct visits (they never split).

    >>> source_key("https://shop.example/?utm_source=a&utm_campaign=b", None)
    'utm:a/-/b'
    >>> source_key("https://shop.example/x", "https://shop.example/") is None
    True
    >>> source_key("https://shop.example/x", "https://news.example/story")
    'ref:news.example'
    """
    query = _query(url)
    if any(k in query for k in ("utm_source", "utm_medium", "utm_campaign")):
        tags = (query.get(k, "-") for k in ("utm_source", "utm_medium", "utm_campaign"))
        return "utm:" + "/".join(tags)
    for click_id in CLICK_IDS:
        if click_id in query:
            return f"click:{click_id}"
    ref_host = _host(referrer)
    if ref_host and not _same_site(ref_host, _host(url)):
        return f"ref:{ref_host.removeprefix('www.')}"
    return None


def landing_page(url: str | None) -> str | None:
    """The page URL without query string or fragment (they may hold personal data).

    >>> landing_page("https://shop.example/p/1?email=a@b.c#top")
    'https://shop.example/p/1'
    """
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}{parts.path}"[:MAX_LANDING_CHARS]


@dataclass(slots=True)
class Session:
    """One visit in progress: the summary the profile shows and the detail the record carries."""

    id: str
    start: int
    last: int
    events: int = 0
    page_views: int = 0
    engaged_ms: int = 0
    # Pings carry the engaged time *of their page so far*: remember the page's latest to add deltas.
    page_engaged_ms: int = 0
    max_scroll: int = 0
    products: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    cart_adds: int = 0
    purchases: int = 0
    purchase_value: float = 0.0
    landing: str | None = None
    referrer_class: str = "direct"
    source: str | None = None

    @classmethod
    def begin(cls, session_id: str, event: Event, at: int) -> Session:
        session = cls(id=session_id, start=at, last=at)
        session.referrer_class = referrer_class(event.url, event.referrer)
        session.source = source_key(event.url, event.referrer)
        return session

    @property
    def duration_ms(self) -> int:
        return self.last - self.start

    def add(self, event: Event, at: int) -> None:
        """Fold one event of this session in (the caller has decided it belongs here)."""
        self.start = min(self.start, at)
        self.last = max(self.last, at)
        self.events += 1
        kind = event.type
        if kind == EventType.PAGE_VIEW:
            self.page_views += 1
            self.page_engaged_ms = 0
            if self.landing is None:
                self.landing = landing_page(event.url)
        elif kind == EventType.PAGE_PING:
            delta = event.engaged_ms - self.page_engaged_ms
            if delta > 0:
                self.engaged_ms += delta
                self.page_engaged_ms = event.engaged_ms
            self.max_scroll = max(self.max_scroll, event.scroll_depth)
        elif kind == EventType.PRODUCT_VIEW:
            _remember(self.products, event.product_id, MAX_SESSION_PRODUCTS)
        elif kind == EventType.ADD_TO_CART:
            self.cart_adds += event.quantity
            _remember(self.products, event.product_id, MAX_SESSION_PRODUCTS)
        elif kind == EventType.PURCHASE:
            self.purchases += 1
            self.purchase_value = round(self.purchase_value + event.value, 2)
            for line in event.items:
                _remember(self.products, line.product_id, MAX_SESSION_PRODUCTS)
                if line.category:
                    _remember(self.categories, line.category, MAX_SESSION_CATEGORIES)
        category = event_field(event, "category")
        if category:
            _remember(self.categories, category, MAX_SESSION_CATEGORIES)
        if self.landing is None and event.url and kind != EventType.PAGE_PING:
            self.landing = landing_page(event.url)

    def summary(self) -> dict[str, Any]:
        """The compact view stored in the Redis profile (``session``)."""
        return {
            "id": self.id,
            "start": self.start,
            "last": self.last,
            "pages": self.page_views,
            "events": self.events,
            "engaged_s": self.engaged_ms // 1000,
            "source": self.referrer_class,
        }

    def record(self, site_id: str, visitor_id: str, *, closed_by: str, revision: int) -> SessionRecord:
        """The closed-session summary written to the ``sessions`` topic."""
        return SessionRecord(
            session_id=self.id,
            site_id=site_id,
            visitor_id=visitor_id,
            start=self.start,
            end=self.last,
            duration_ms=self.duration_ms,
            events=self.events,
            page_views=self.page_views,
            engaged_ms=self.engaged_ms,
            max_scroll=self.max_scroll,
            products=list(self.products),
            categories=list(self.categories),
            cart_adds=self.cart_adds,
            purchases=self.purchases,
            purchase_value=self.purchase_value,
            landing_page=self.landing,
            referrer_class=self.referrer_class,
            converted=self.purchases > 0,
            closed_by=closed_by,
            revision=revision,
        )

    def to_state(self) -> list[Any]:
        """Lossless plain data for the worker's table (positional: it is stored per visitor)."""
        return [
            self.id,
            self.start,
            self.last,
            self.events,
            self.page_views,
            self.engaged_ms,
            self.page_engaged_ms,
            self.max_scroll,
            self.products,
            self.categories,
            self.cart_adds,
            self.purchases,
            self.purchase_value,
            self.landing,
            self.referrer_class,
            self.source,
        ]

    @classmethod
    def from_state(cls, data: list[Any]) -> Session:
        (
            sid,
            start,
            last,
            events,
            pages,
            engaged,
            page_engaged,
            scroll,
            products,
            categories,
            carts,
            purchases,
            value,
            landing,
            ref_class,
            source,
        ) = data
        return cls(
            sid,
            start,
            last,
            events,
            pages,
            engaged,
            page_engaged,
            scroll,
            list(products),
            list(categories),
            carts,
            purchases,
            value,
            landing,
            ref_class,
            source,
        )


def _remember(items: list[str], item: str, limit: int) -> None:
    if item not in items and len(items) < limit:
        items.append(item)


@dataclass(frozen=True, slots=True)
class SessionRules:
    """When a new session starts (``TRACKER_SESSION_GAP_SECONDS``, ``TRACKER_SESSION_SPLIT_ON_SOURCE``)."""

    gap_ms: int = 30 * 60_000
    split_on_source: bool = True

    def boundary(self, session: Session | None, event: Event, at: int) -> str | None:
        """Why ``event`` (at event time ``at``) starts a new session, or None if it continues
        ``session``; ``"late"`` if it is older than the session by more than a gap (it then
        joins no session)."""
        if session is None:
            return "first"
        if at > session.last + self.gap_ms:
            return "gap"
        if at < session.start - self.gap_ms:
            return "late"
        if self.split_on_source and event.type == EventType.PAGE_VIEW:
            key = source_key(event.url, event.referrer)
            if key is not None and key != session.source:
                return "source"
        return None
