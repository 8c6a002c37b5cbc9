"""What the collector adds at the edge: truncated IP, parsed user agent, receive time.

Pure functions, no I/O. The raw IP and the raw user-agent string are used here and
nowhere else: only the derived values reach :class:`~tracker.schema.ServerContext`.
"""

from __future__ import annotations

import ipaddress
import re
import time

from tracker.schema import ServerContext

IPV4_PREFIX = 24
IPV6_PREFIX = 48
# Longer user agents are truncated before matching: bounds the regex work per request.
MAX_USER_AGENT_CHARS = 512


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds (the wire format of every timestamp)."""
    return time.time_ns() // 1_000_000


def truncate_ip(host: str | None) -> str | None:
    """The client's network, never its address: IPv4 to /24, IPv6 to /48.

    IPv4-mapped IPv6 addresses are treated as IPv4. Anything that is not an IP
    address (a Unix socket peer, a test client's name) gives ``None``.

    >>> truncate_ip("203.0.113.77")
    '203.0.113.0/24'
    >>> truncate_ip("2001:db8:85a3:1234::7")
    '2001:db8:85a3::/48'
    >>> truncate_ip("::ffff:198.51.100.9")
    '198.51.100.0/24'
    >>> truncate_ip("testclient") is None
    True
    """
    if not host:
        return None
    try:
        # A zone index ("fe80::1%eth0") identifies an interface, not a visitor: drop it.
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


_BOT = re.compile(
    r"(?<!cu)bot\b|bot/|crawl|spider|slurp|headless|lighthouse|pagespeed|facebookexternalhit|"
    r"curl/|wget/|python-requests|python-urllib|httpx/|aiohttp|go-http-client|java/|okhttp|"
    r"scrapy|phantomjs|selenium|puppeteer|playwright",
    re.IGNORECASE,
)
# Order matters: Edge and Opera also claim Chrome, Chrome also claims Safari.
_BROWSERS = (
    ("Edge", re.compile(r"Edg(?:e|A|iOS)?/")),
    ("Opera", re.compile(r"OPR/|Opera")),
    ("Samsung Internet", re.compile(r"SamsungBrowser/")),
    ("Firefox", re.compile(r"Firefox/|FxiOS/")),
    ("Chrome", re.compile(r"Chrome/|CriOS/")),
    ("Safari", re.compile(r"Version/[\d.]+.*Safari/")),
)
_SYSTEMS = (
    ("iOS", re.compile(r"iPhone|iPad|iPod")),
    ("Android", re.compile(r"Android")),
    ("Windows", re.compile(r"Windows NT")),
    ("ChromeOS", re.compile(r"CrOS")),
    ("macOS", re.compile(r"Mac OS X|Macintosh")),
    ("Linux", re.compile(r"Linux")),
)
_TABLET = re.compile(r"iPad|Tablet|Android(?!.*Mobile)")
_MOBILE = re.compile(r"Mobi|iPhone|iPod")


def parse_user_agent(user_agent: str | None) -> dict[str, str | bool | None]:
    """Coarse browser, OS, device class and bot flag: enough for segments, not a fingerprint.

    >>> parse_user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    ...                  "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
    {'browser': 'Safari', 'os': 'iOS', 'device': 'mobile', 'is_bot': False}
    >>> parse_user_agent("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")["is_bot"]
    True
    """
    if not user_agent:
        return {"browser": None, "os": None, "device": None, "is_bot": False}
    ua = user_agent[:MAX_USER_AGENT_CHARS]
    is_bot = _BOT.search(ua) is not None
    browser = next((name for name, pattern in _BROWSERS if pattern.search(ua)), None)
    system = next((name for name, pattern in _SYSTEMS if pattern.search(ua)), None)
    if is_bot:
        device = "bot"
    elif _TABLET.search(ua):
        device = "tablet"
    elif _MOBILE.search(ua):
        device = "mobile"
    else:
        device = "desktop"
    return {"browser": browser, "os": system, "device": device, "is_bot": is_bot}


def server_context(client_host: str | None, user_agent: str | None, *, received_at: int) -> ServerContext:
    """The :class:`ServerContext` for one request; shared by every event of its batch."""
    return ServerContext(
        received_at=received_at, ip_prefix=truncate_ip(client_host), **parse_user_agent(user_agent)
    )
