"""User-agent parsing: browser, OS, device class and bot flag, with the maintained ``ua-parser``.

ua-parser (uap-core's regexes; ``ua-parser-rs`` makes an uncached parse take tens of
microseconds) gives the browser, OS and device families; the device *class* and the
bot flag are derived here. Only families are kept, never versions or models: enough
for segments, not a fingerprint. The raw string is used here and dropped.
"""

from __future__ import annotations

import functools
import re
from typing import TypedDict

import ua_parser

# Longer user agents are cut before parsing: bounds the regex work per request.
MAX_USER_AGENT_CHARS = 512

# Automation clients and crawlers that uap-core does not classify as "Spider".
_AUTOMATION = re.compile(
    r"headless|bot\b|bot/|crawl|spider|slurp|lighthouse|pagespeed|facebookexternalhit|"
    r"curl/|wget/|python-|httpx|aiohttp|go-http-client|java/|okhttp|libwww|scrapy|"
    r"phantomjs|selenium|puppeteer|playwright",
    re.IGNORECASE,
)
_TABLET_DEVICES = re.compile(r"iPad|Kindle|Tablet|Nexus (7|9|10)|SM-[TXP]\d|Tab\b", re.IGNORECASE)
_TOUCH_SYSTEMS = frozenset(
    {"iOS", "Android", "Windows Phone", "KaiOS", "BlackBerry OS", "Tizen", "HarmonyOS"}
)
_DESKTOP_SYSTEMS = frozenset(
    {"Windows", "Mac OS X", "Linux", "Ubuntu", "Fedora", "Debian", "Chrome OS", "FreeBSD", "OpenBSD"}
)


class UserAgentInfo(TypedDict):
    browser: str | None
    os: str | None
    device: str | None
    is_bot: bool


def warm_up() -> None:
    """Compile the rules now (a few hundred ms) rather than on the first request."""
    ua_parser.parse("Mozilla/5.0")


def parse_user_agent(user_agent: str | None) -> UserAgentInfo:
    """Browser and OS family, device class (desktop, mobile, tablet, bot, other) and bot flag.

    >>> parse_user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    ...                  "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
    {'browser': 'Mobile Safari', 'os': 'iOS', 'device': 'mobile', 'is_bot': False}
    >>> parse_user_agent("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")["is_bot"]
    True
    """
    if not user_agent:
        return {"browser": None, "os": None, "device": None, "is_bot": False}
    browser, system, device, is_bot = _parse(user_agent[:MAX_USER_AGENT_CHARS])
    return {"browser": browser, "os": system, "device": device, "is_bot": is_bot}


# A site's visitors share a few hundred user agents: most requests are a cache hit.
@functools.lru_cache(maxsize=8192)
def _parse(ua: str) -> tuple[str | None, str | None, str, bool]:
    result = ua_parser.parse(ua)
    browser = result.user_agent.family if result.user_agent else None
    system = result.os.family if result.os else None
    family = result.device.family if result.device else None
    is_bot = family == "Spider" or _AUTOMATION.search(ua) is not None
    device = _device_class(ua, system, family, result.device.brand if result.device else None, is_bot)
    return (browser if browser != "Other" else None, system if system != "Other" else None, device, is_bot)


def _device_class(ua: str, system: str | None, family: str | None, brand: str | None, is_bot: bool) -> str:
    if is_bot:
        return "bot"
    if (family and _TABLET_DEVICES.search(family)) or (brand and "Tablet" in brand):
        return "tablet"
    if system == "Android" and "Mobile" not in ua:
        return "tablet"  # Android tablets drop "Mobile" from the UA (Google's guidance to vendors)
    if system in _TOUCH_SYSTEMS:
        return "mobile"
    if system in _DESKTOP_SYSTEMS:
        return "desktop"
    return "other"
