"""IP truncation, user-agent parsing and the server context (pure, no services)."""

from __future__ import annotations

import pytest

from tracker.collect.enrich import now_ms, parse_user_agent, server_context, truncate_ip
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


@pytest.mark.parametrize(
    ("ua", "browser", "os", "device", "is_bot"),
    [
        (CHROME_WINDOWS, "Chrome", "Windows", "desktop", False),
        (EDGE_WINDOWS, "Edge", "Windows", "desktop", False),
        (FIREFOX_LINUX, "Firefox", "Linux", "desktop", False),
        (SAFARI_MAC, "Safari", "macOS", "desktop", False),
        (CHROME_ANDROID_PHONE, "Chrome", "Android", "mobile", False),
        (ANDROID_TABLET, "Chrome", "Android", "tablet", False),
        (IPAD, "Safari", "iOS", "tablet", False),
        (HEADLESS, "Chrome", "Windows", "bot", True),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", None, None, "bot", True),
        ("curl/8.5.0", None, None, "bot", True),
        ("python-requests/2.32.3", None, None, "bot", True),
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
        "Chrome",
        "Android",
        "mobile",
        False,
    )
    dumped = context.model_dump_json()
    assert "203.0.113.77" not in dumped
    assert "Pixel" not in dumped  # the raw user agent is dropped


def test_now_ms_is_epoch_milliseconds() -> None:
    assert MIN_TS_MS < now_ms() < MAX_TS_MS
