"""Signed self-access links: how a site lets a visitor read their own profile (pure).

A site that wants to show a visitor what it knows about them (a "my data" page)
signs a link on its server with the shared key ``TRACKER_ACCESS_SIGNING_KEY``::

    sig = base64url(HMAC-SHA256(key, "v1:<site>:<visitor>:<expires>"))   # no padding
    GET /v1/me?site=<site>&visitor=<visitor>&expires=<unix seconds>&sig=<sig>

The link works until ``expires`` for exactly that site and visitor; the key
never leaves the site's servers and the offer API. ``tracker access-link``
prints one. Signatures are compared in constant time.

>>> key = "k" * 32
>>> sig = sign_access("shop", "visitor-0001", 2_000_000_000, key)
>>> verify_access("shop", "visitor-0001", 2_000_000_000, sig, key, now=1_900_000_000)
True
>>> verify_access("shop", "visitor-0002", 2_000_000_000, sig, key, now=1_900_000_000)
False
>>> verify_access("shop", "visitor-0001", 2_000_000_000, sig, key, now=2_000_000_001)
False
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlencode

ACCESS_VERSION = "v1"


def sign_access(site_id: str, visitor_id: str, expires: int, key: str) -> str:
    """The ``sig`` parameter of a self-access link valid until ``expires`` (Unix seconds)."""
    if not key:
        raise ValueError("the signing key is empty; set TRACKER_ACCESS_SIGNING_KEY")
    message = f"{ACCESS_VERSION}:{site_id}:{visitor_id}:{expires}".encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify_access(site_id: str, visitor_id: str, expires: int, sig: str, key: str, *, now: float) -> bool:
    """Whether ``sig`` was made with ``key`` for this site, visitor and expiry, and has not expired."""
    if not key or expires <= now:
        return False
    expected = sign_access(site_id, visitor_id, expires, key)
    return hmac.compare_digest(expected.encode(), sig.encode())


def access_link(base_url: str, site_id: str, visitor_id: str, expires: int, key: str) -> str:
    """A complete ``GET /v1/me`` link for the offer API at ``base_url``."""
    query = urlencode(
        {
            "site": site_id,
            "visitor": visitor_id,
            "expires": expires,
            "sig": sign_access(site_id, visitor_id, expires, key),
        }
    )
    return f"{base_url.rstrip('/')}/v1/me?{query}"
