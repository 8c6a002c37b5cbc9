"""What the collector adds at the edge: client network, parsed user agent, receive time.

Pure functions, no I/O. The raw IP and the raw user-agent string are used here and
nowhere else: only the derived values reach :class:`~tracker.schema.ServerContext`.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Sequence

from tracker.collect.useragent import parse_user_agent
from tracker.schema import ServerContext

IPV4_PREFIX = 24
IPV6_PREFIX = 48
# X-Forwarded-For hops looked at, from the right: a client can prepend any number of its own.
MAX_FORWARDED_HOPS = 16

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds (the wire format of every timestamp)."""
    return time.time_ns() // 1_000_000


def _address(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not host:
        return None
    try:
        # A zone index ("fe80::1%eth0") identifies an interface, not a visitor: drop it.
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=65_536)  # clients send many requests: parse each address once
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
    address = _address(host)
    if address is None:
        return None
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _hop_host(hop: str) -> str:
    """An X-Forwarded-For entry without port or brackets: ``[2001:db8::1]:443`` -> ``2001:db8::1``."""
    hop = hop.strip()
    if hop.startswith("["):
        return hop[1:].split("]", 1)[0]
    if hop.count(":") == 1:  # IPv4 with a port; bare IPv6 has several colons
        return hop.split(":", 1)[0]
    return hop


def client_host(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str | None:
    """The client's address: the TCP peer, or, when the peer is a trusted proxy, the
    rightmost X-Forwarded-For hop that is not itself a trusted proxy.

    Hops left of the first untrusted one were written by the client and are ignored:
    a client cannot choose the address that gets truncated.

    >>> proxies = parse_networks(["10.0.0.0/8"])
    >>> client_host("10.1.2.3", "6.6.6.6, 198.51.100.7, 10.9.9.9", proxies)
    '198.51.100.7'
    >>> client_host("203.0.113.5", "6.6.6.6", proxies)  # not from a trusted proxy: header ignored
    '203.0.113.5'
    """
    if not trusted or not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [h for h in forwarded_for.split(",")[-MAX_FORWARDED_HOPS:] if h.strip()]
    for hop in reversed(hops):
        host = _hop_host(hop)
        if not _trusted(host, trusted):
            return host
    return _hop_host(hops[0]) if hops else peer


def _trusted(host: str | None, trusted: Sequence[Network]) -> bool:
    address = _address(host)
    return address is not None and any(address in network for network in trusted)


def server_context(
    client_address: str | None,
    user_agent: str | None,
    *,
    received_at: int,
    parse_agent: bool = True,
    anonymous: bool = False,
) -> ServerContext:
    """The :class:`ServerContext` for one request; shared by every event of its batch.

    ``parse_agent=False`` for senders whose user agent is not the visitor's (a server
    using its write key): nothing is derived from it.
    """
    agent = parse_user_agent(user_agent if parse_agent else None)
    return ServerContext(
        received_at=received_at, ip_prefix=truncate_ip(client_address), anonymous=anonymous, **agent
    )
