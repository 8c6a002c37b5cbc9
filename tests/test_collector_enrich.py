"""IP truncation, user-agent parsing and the server context (pure, no services)."""

from __future__ import annotations

import pytest

from tracker.collect.enrich import client_host, now_ms, parse_networks, server_context, truncate_ip
from tracker.collect.useragent import parse_user_agent
from tracker.schema import MAX_TS_MS, MIN_TS_MS


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("10.1.2.255", "10.1.2.0/24"),
        ("203.0.113.0", "203.0.113.0/24"),
        ("2001:db8:85a3:1234:5678:8a2e:370:7334", "2001:db8:85a3::/48"),
        ("2001:0db8:0001:ffff::1", "2001:db8:1::/48"),
        ("::ffff:198.51.100.9", "198.51.100.0/24"),  # IPv4-mapped: truncated as IPv4
        ("fe80::1:2:3:4%eth0", "fe80::/48"),  # zone index dropped
        ("::1", "::/48"),
    ],
)
def test_truncate_ip_keeps_only_the_network(host: str, expected: str) -> None:
    assert truncate_ip(host) == expected


@pytest.mark.parametrize("host", [None, "", "testclient", "999.1.1.1", "not:an:ip::x", "unix:/tmp/socket"])
def test_truncate_ip_gives_none_for_non_addresses(host: str | None) -> None:
    assert truncate_ip(host) is None


def test_truncated_ip_never_contains_the_host_part() -> None:
    assert "77" not in truncate_ip("203.0.113.77")
    assert "5678" not in truncate_ip("2001:db8:85a3:1234:5678::1")


CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
EDGE_WINDOWS = CHROME_WINDOWS + " Edg/124.0.2478.51"
FIREFOX_LINUX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15"
)
CHROME_ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
HEADLESS = CHROME_WINDOWS.replace("Chrome/", "HeadlessChrome/")
SAMSUNG_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36"
)


@pytest.mark.parametrize(
    ("ua", "browser", "os", "device", "is_bot"),
    [
        (CHROME_WINDOWS, "Chrome", "Windows", "desktop", False),
        (EDGE_WINDOWS, "Edge", "Windows", "desktop", False),
        (FIREFOX_LINUX, "Firefox", "Ubuntu", "desktop", False),
        (SAFARI_MAC, "Safari", "Mac OS X", "desktop", False),
        (CHROME_ANDROID_PHONE, "Chrome Mobile", "Android", "mobile", False),
        (SAMSUNG_PHONE, "Samsung Internet", "Android", "mobile", False),
        (ANDROID_TABLET, "Chrome", "Android", "tablet", False),
        (IPAD, "Mobile Safari", "iOS", "tablet", False),
        (HEADLESS, "HeadlessChrome", "Windows", "bot", True),
        (
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "bingbot",
            None,
            "bot",
            True,
        ),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Googlebot",
            None,
            "bot",
            True,
        ),
        ("curl/8.5.0", "curl", None, "bot", True),
        ("python-requests/2.32.3", "Python Requests", None, "bot", True),
        ("python-httpx/0.28.1", None, None, "bot", True),
        ("something unheard of", None, None, "other", False),
    ],
)
def test_parse_user_agent(ua: str, browser: str | None, os: str | None, device: str, is_bot: bool) -> None:
    assert parse_user_agent(ua) == {"browser": browser, "os": os, "device": device, "is_bot": is_bot}


def test_parse_user_agent_without_header() -> None:
    assert parse_user_agent(None) == {"browser": None, "os": None, "device": None, "is_bot": False}


def test_server_context_holds_derived_values_only() -> None:
    received = now_ms()
    context = server_context("203.0.113.77", CHROME_ANDROID_PHONE, received_at=received)
    assert context.received_at == received
    assert context.ip_prefix == "203.0.113.0/24"
    assert (context.browser, context.os, context.device, context.is_bot) == (
        "Chrome Mobile",
        "Android",
        "mobile",
        False,
    )
    dumped = context.model_dump_json()
    assert "203.0.113.77" not in dumped
    assert "Pixel" not in dumped  # the raw user agent is dropped


def test_now_ms_is_epoch_milliseconds() -> None:
    assert MIN_TS_MS < now_ms() < MAX_TS_MS


def test_user_agent_parse_is_bounded_and_keeps_families_only() -> None:
    huge = CHROME_WINDOWS + " x" * 50_000
    assert parse_user_agent(huge)["browser"] == "Chrome"
    # Versions and device models are never kept: they would help fingerprinting.
    assert "124" not in str(parse_user_agent(CHROME_WINDOWS))
    assert "Pixel" not in str(parse_user_agent(CHROME_ANDROID_PHONE))


def test_server_context_without_agent_parsing_derives_nothing() -> None:
    context = server_context("203.0.113.77", "curl/8.5.0", received_at=now_ms(), parse_agent=False)
    assert (context.browser, context.device, context.is_bot) == (None, None, False)


TRUSTED = parse_networks(["10.0.0.0/8", "2001:db8:ffff::/48"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.0.0.2", "198.51.100.7", "198.51.100.7"),  # one trusted proxy
        ("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.3.3.3", "198.51.100.7"),  # client-written hops ignored
        ("10.0.0.2", "198.51.100.7:4711", "198.51.100.7"),  # a port after the address
        ("10.0.0.2", "[2001:db8:1::9]:443", "2001:db8:1::9"),
        ("10.0.0.2", "10.1.1.1, 10.2.2.2", "10.1.1.1"),  # all trusted: the leftmost
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", " , ", "10.0.0.2"),
        ("203.0.113.5", "6.6.6.6", "203.0.113.5"),  # not a trusted proxy: header ignored
        ("2001:db8:ffff::1", "198.51.100.7", "198.51.100.7"),
        (None, "198.51.100.7", None),
    ],
)
def test_client_host_believes_forwarded_for_only_from_trusted_proxies(
    peer: str | None, forwarded: str | None, expected: str | None
) -> None:
    assert client_host(peer, forwarded, TRUSTED) == expected


def test_client_host_without_trusted_proxies_is_the_peer() -> None:
    assert client_host("10.0.0.2", "198.51.100.7", ()) == "10.0.0.2"
