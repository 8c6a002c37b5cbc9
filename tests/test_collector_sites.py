"""The site registry, origin matching, and the pure pieces of the edge: rate limiter, in-flight buffer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker.collect.inflight import InflightBuffer
from tracker.collect.privacy import read_visitor_cookie, refuses_tracking, visitor_cookie
from tracker.collect.ratelimit import TokenBucketLimiter
from tracker.collect.sites import SiteRegistry, load_sites_file
from tracker.errors import (
    OriginNotAllowedError,
    SitesConfigError,
    UnauthorizedSenderError,
    UnknownSiteError,
)
from tracker.settings import REPO_ROOT, Settings, SiteConfig, normalise_origin

KEY = "a-write-key-of-some-length"
REGISTRY = SiteRegistry(
    [
        SiteConfig(
            id="shop", origins=("https://shop.example", "https://*.shop.example", "http://localhost:8000")
        ),
        SiteConfig(id="api", write_key=KEY),
    ]
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sites.yaml"
    path.write_text(text)
    return path


def test_the_shipped_sites_file_loads() -> None:
    sites = load_sites_file(REPO_ROOT / "deploy" / "sites.yaml")
    assert "demo" in {site.id for site in sites}


def test_settings_entries_replace_file_entries_by_id(tmp_path: Path) -> None:
    path = write(
        tmp_path, "version: 1\nsites:\n  - id: demo\n    origins: [https://old.example]\n  - id: other\n"
    )
    settings = Settings(sites_path=path, sites=[{"id": "demo", "origins": ["https://new.example"]}])
    registry = SiteRegistry.from_settings(settings)
    assert set(registry.sites) == {"demo", "other"}
    assert registry.origin_allowed("demo", "https://new.example")
    assert not registry.origin_allowed("demo", "https://old.example")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sites: []", "version: 1"),
        ("version: 1\nsites: {demo: 1}", "must be a list"),
        ("version: 1\nsites: []\nextra: 1", "unknown keys: extra"),
        ("version: 1\nsites:\n  - id: Demo Shop", "Site 'Demo Shop'"),
        ("version: 1\nsites:\n  - id: demo\n    origins: [https://shop.example/path]", "must look like"),
        ("version: 1\nsites:\n  - id: demo\n    write_key: short", "write_key"),
        ("version: 1\nsites:\n  - id: demo\n    colour: red", "colour"),
        ("version: 1\nsites:\n  - id: demo\n  - id: demo", "demo more than once"),
        ("version: 1\nsites: [", "not valid YAML"),
    ],
)
def test_a_bad_sites_file_is_refused_with_its_reason(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(SitesConfigError, match=fragment):
        load_sites_file(write(tmp_path, text))


def test_a_missing_sites_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SitesConfigError, match="TRACKER_SITES_PATH"):
        load_sites_file(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("https://Shop.Example/", "https://shop.example"),
        ("https://shop.example:443", "https://shop.example"),
        ("http://shop.example:80", "http://shop.example"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("https://*.shop.example", "https://*.shop.example"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_origins_are_normalised(raw: str, normalised: str) -> None:
    assert normalise_origin(raw) == normalised


@pytest.mark.parametrize(
    "raw",
    ["shop.example", "ftp://shop.example", "https://shop.example/x", "https://u:p@shop.example", "null"],
)
def test_what_is_not_an_origin_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="must look like"):
        normalise_origin(raw)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://shop.example", True),
        ("https://www.shop.example", True),
        ("https://a.b.shop.example", True),
        ("https://SHOP.example:443", True),
        ("http://shop.example", False),  # another scheme is another origin
        ("https://shop.example:8443", False),
        ("https://evilshop.example", False),
        ("https://shop.example.evil.example", False),
        ("http://localhost:8000", True),
        ("http://localhost:8001", False),
        ("null", False),
        ("", False),
    ],
)
def test_origin_matching(origin: str, allowed: bool) -> None:
    assert REGISTRY.origin_allowed("shop", origin) is allowed
    assert REGISTRY.origin_allowed_anywhere(origin) is allowed


def test_authorize_rules() -> None:
    assert REGISTRY.authorize("shop", origin="https://shop.example", authorization=None) is False
    assert REGISTRY.authorize("shop", origin=None, authorization=None) is False  # no key on this site
    assert REGISTRY.authorize("api", origin=None, authorization=f"Bearer {KEY}") is True
    assert REGISTRY.authorize("api", origin=None, authorization=f"bearer  {KEY} ") is True
    with pytest.raises(UnknownSiteError, match="'nope' is not registered"):
        REGISTRY.authorize("nope", origin=None, authorization=None)
    with pytest.raises(OriginNotAllowedError, match=r"'https://evil\.example'"):
        REGISTRY.authorize("shop", origin="https://evil.example", authorization=None)
    with pytest.raises(UnauthorizedSenderError, match="Authorization: Bearer"):
        REGISTRY.authorize("api", origin=None, authorization=None)
    with pytest.raises(UnauthorizedSenderError, match="not site 'api'"):
        REGISTRY.authorize("api", origin=None, authorization="Bearer nope")
    # A key does not let a browser from a foreign origin in.
    with pytest.raises(OriginNotAllowedError):
        REGISTRY.authorize("api", origin="https://evil.example", authorization=f"Bearer {KEY}")


def test_unregistered_sites_only_when_allowed_and_never_in_production() -> None:
    open_registry = SiteRegistry([], allow_unregistered=True)
    assert open_registry.authorize("anything", origin="https://any.example", authorization=None) is False
    assert open_registry.origin_allowed_anywhere("https://any.example")
    with pytest.raises(ValueError, match="TRACKER_ALLOW_UNREGISTERED_SITES"):
        Settings(environment="production", admin_token="x" * 32, allow_unregistered_sites=True)


def test_trusted_proxies_setting_takes_cidrs_and_refuses_junk() -> None:
    assert Settings(trusted_proxies="10.0.0.0/8, 192.168.1.7").trusted_proxies == (
        "10.0.0.0/8",
        "192.168.1.7/32",
    )
    assert Settings(trusted_proxies='["10.0.0.0/8"]').trusted_proxies == ("10.0.0.0/8",)
    with pytest.raises(ValueError, match="'ten' is not an IP network"):
        Settings(trusted_proxies="ten")


def test_token_bucket_refills_at_its_rate_and_bounds_its_memory() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(rate=2.0, burst=3, max_keys=2, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    now[0] = 0.5  # one token back
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == 0.5
    now[0] = 100.0
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # never more than the burst
    assert limiter.take("a") > 0
    limiter.take("b")
    limiter.take("c")  # evicts "a", the least recently used
    assert len(limiter) == 2
    assert limiter.take("a") == 0.0  # forgotten = full again


def test_token_bucket_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucketLimiter(rate=0, burst=1)


def test_inflight_buffer_bounds_bytes_and_records() -> None:
    buffer = InflightBuffer(max_bytes=1000, max_records=10)
    assert buffer.try_acquire(900, 1)
    assert not buffer.try_acquire(200, 1)  # bytes
    assert buffer.try_acquire(100, 9)
    assert not buffer.try_acquire(0, 1)  # records
    buffer.release(1000, 10)
    assert (buffer.bytes, buffer.records) == (0, 0)
    assert buffer.try_acquire(5000, 50)  # alone, even an oversized batch goes


def test_privacy_signals_and_cookie() -> None:
    assert refuses_tracking({"dnt": "1"}) and refuses_tracking({"sec-gpc": " 1 "})
    assert not refuses_tracking({"dnt": "0", "sec-gpc": "0"})
    settings = Settings(visitor_cookie_domain="shop.example", visitor_cookie_secure=False)
    cookie = visitor_cookie(settings, "visitor-0001")
    assert cookie.startswith("trk_vid=visitor-0001; Max-Age=34214400; Path=/")
    assert "Domain=shop.example" in cookie and "Secure" not in cookie and "HttpOnly" in cookie
    assert read_visitor_cookie(settings, {"trk_vid": "visitor-0001"}) == "visitor-0001"
    assert read_visitor_cookie(settings, {"trk_vid": "bad;id"}) is None
    assert read_visitor_cookie(settings, {}) is None
