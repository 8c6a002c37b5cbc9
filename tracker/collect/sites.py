"""The site registry: which sites may send events, from which browser origins, with which key.

Sites come from a YAML file (``TRACKER_SITES_PATH``, ``deploy/sites.yaml``) and from
``TRACKER_SITES``; an id in both takes the settings' entry. Pure logic apart from
reading the file once at start-up.

Who may send for a site (docs/ARCHITECTURE.md, "Collector HTTP contract"):
a browser (a request with ``Origin``) from one of the site's origins; a sender without
``Origin`` with the site's write key when it has one. Origins only stop other sites'
browsers: anyone can forge the header, which is why server-side senders use a key.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from pathlib import Path

import pydantic
import yaml

from tracker.errors import (
    OriginNotAllowedError,
    SitesConfigError,
    UnauthorizedSenderError,
    UnknownSiteError,
)
from tracker.settings import Settings, SiteConfig, normalise_origin

SITES_FILE_VERSION = 1


def load_sites_file(path: Path) -> list[SiteConfig]:
    """The sites of a registry file: ``{"version": 1, "sites": [{"id", "origins", "write_key"}]}``."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SitesConfigError(
            f"Cannot read the sites file {path}: {exc.strerror or exc}; set TRACKER_SITES_PATH"
        ) from None
    except yaml.YAMLError as exc:
        raise SitesConfigError(f"The sites file {path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict) or document.get("version") != SITES_FILE_VERSION:
        raise SitesConfigError(
            f"The sites file {path} must be a mapping with 'version: {SITES_FILE_VERSION}' and a 'sites' list"
        )
    unknown = set(document) - {"version", "sites"}
    if unknown:
        raise SitesConfigError(
            f"The sites file {path} has unknown keys: {', '.join(sorted(map(str, unknown)))}"
        )
    entries = document.get("sites") or []
    if not isinstance(entries, list):
        raise SitesConfigError(f"'sites' in {path} must be a list of sites")
    sites: list[SiteConfig] = []
    for index, entry in enumerate(entries):
        try:
            sites.append(SiteConfig.model_validate(entry))
        except pydantic.ValidationError as exc:
            name = entry.get("id", f"#{index}") if isinstance(entry, dict) else f"#{index}"
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(entry)'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise SitesConfigError(f"Site {name!r} in {path} is invalid: {problems}") from None
    ids = [site.id for site in sites]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SitesConfigError(f"The sites file {path} lists {', '.join(duplicates)} more than once")
    return sites


class SiteRegistry:
    """Looks up sites and decides whether a request may send for one.

    >>> registry = SiteRegistry([SiteConfig(id="shop", origins=("https://*.shop.example",))])
    >>> registry.origin_allowed_anywhere("https://www.shop.example")
    True
    >>> registry.origin_allowed_anywhere("https://shop.example.evil.example")
    False
    """

    def __init__(self, sites: Iterable[SiteConfig], *, allow_unregistered: bool = False) -> None:
        self._sites: dict[str, SiteConfig] = {site.id: site for site in sites}
        self.allow_unregistered = allow_unregistered
        # Per site and across sites: exact origins in a set (the common case, one lookup),
        # wildcard ones ("https://*.shop.example") as (scheme prefix, ".shop.example").
        self._exact: dict[str, frozenset[str]] = {}
        self._wildcards: dict[str, tuple[tuple[str, str], ...]] = {}
        for site in self._sites.values():
            exact, wild = set(), []
            for origin in site.origins:
                scheme, _, rest = origin.partition("://")
                if rest.startswith("*."):
                    wild.append((f"{scheme}://", rest[1:]))
                else:
                    exact.add(origin)
            self._exact[site.id] = frozenset(exact)
            self._wildcards[site.id] = tuple(wild)
        self._any_exact = frozenset().union(*self._exact.values())
        self._any_wildcards = tuple({w for ws in self._wildcards.values() for w in ws})

    @classmethod
    def from_settings(cls, settings: Settings) -> SiteRegistry:
        sites: dict[str, SiteConfig] = {site.id: site for site in load_sites_file(settings.sites_path)}
        sites.update({site.id: site for site in settings.sites})
        return cls(sites.values(), allow_unregistered=settings.allow_unregistered_sites)

    @property
    def sites(self) -> Mapping[str, SiteConfig]:
        return self._sites

    def get(self, site_id: str) -> SiteConfig | None:
        return self._sites.get(site_id)

    def origin_allowed_anywhere(self, origin: str | None) -> bool:
        """Whether some site allows ``origin`` (what CORS headers and preflights are answered for)."""
        if not origin:
            return False
        if self.allow_unregistered:
            return True
        return _matches(origin, self._any_exact, self._any_wildcards)

    def origin_allowed(self, site_id: str, origin: str) -> bool:
        if site_id not in self._sites:
            return self.allow_unregistered
        return _matches(origin, self._exact[site_id], self._wildcards[site_id])

    def authorize(self, site_id: str, *, origin: str | None, authorization: str | None) -> bool:
        """Raise unless this request may send events for ``site_id``; True if it did so with
        the site's write key (a server-side sender).

        ``origin`` is the ``Origin`` header (browsers), ``authorization`` the
        ``Authorization`` header (``Bearer <write key>``, server-side senders).
        """
        site = self._sites.get(site_id)
        if site is None:
            if self.allow_unregistered:
                return False
            raise UnknownSiteError(
                f"Site {site_id!r} is not registered with this collector; add it to the sites file"
            )
        keyed = False
        if site.write_key is not None and (authorization is not None or origin is None):
            if authorization is None:
                raise UnauthorizedSenderError(
                    f"Site {site_id!r} needs its write key from senders without an Origin header: "
                    "send 'Authorization: Bearer <write key>'"
                )
            if not _key_matches(authorization, site.write_key):
                raise UnauthorizedSenderError(f"The write key presented is not site {site_id!r}'s")
            keyed = True
        if origin is not None and not self.origin_allowed(site_id, origin):
            raise OriginNotAllowedError(
                f"Origin {origin[:200]!r} is not allowed to send events for site {site_id!r}; "
                "add it to the site's origins"
            )
        return keyed


def _matches(origin: str, exact: frozenset[str], wildcards: tuple[tuple[str, str], ...]) -> bool:
    if origin in exact:  # browsers send origins already normalised: the fast path
        return True
    try:
        origin = normalise_origin(origin)
    except ValueError:
        return False  # "null" (sandboxed frames, file://) and junk
    if origin in exact:
        return True
    for scheme, suffix in wildcards:
        # "*.shop.example" matches "www.shop.example" and "a.b.shop.example", not "shop.example".
        if origin.startswith(scheme) and origin.endswith(suffix) and len(origin) > len(scheme) + len(suffix):
            return True
    return False


def _key_matches(authorization: str | None, write_key: str | None) -> bool:
    if authorization is None or write_key is None:
        return False
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), write_key.encode())
