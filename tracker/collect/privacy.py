"""Consent signals at the edge: Do Not Track, Global Privacy Control, the visitor cookie.

Pure functions. The rules (docs/ARCHITECTURE.md, "Collector HTTP contract"): ``DNT: 1``
or ``Sec-GPC: 1`` count as a refusal unless the batch carries recorded consent; the
server-set first-party visitor cookie is only ever set with consent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tracker.settings import Settings

_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def refuses_tracking(headers: Mapping[str, str]) -> bool:
    """Whether the browser signals a refusal: ``DNT: 1`` or ``Sec-GPC: 1``.

    >>> refuses_tracking({"sec-gpc": "1"}), refuses_tracking({"dnt": "0"}), refuses_tracking({})
    (True, False, False)
    """
    return headers.get("dnt", "").strip() == "1" or headers.get("sec-gpc", "").strip() == "1"


def visitor_cookie(settings: Settings, visitor_id: str) -> str:
    """The ``Set-Cookie`` value that stores ``visitor_id`` as the first-party visitor cookie.

    HttpOnly: page scripts (and whatever third-party code a page runs) cannot read it;
    the snippet asks the collector for it instead.
    """
    parts = [
        f"{settings.visitor_cookie_name}={visitor_id}",
        f"Max-Age={settings.visitor_cookie_max_age_seconds}",
        "Path=/",
        "SameSite=Lax",
        "HttpOnly",
    ]
    if settings.visitor_cookie_domain:
        parts.append(f"Domain={settings.visitor_cookie_domain}")
    if settings.visitor_cookie_secure:
        parts.append("Secure")
    return "; ".join(parts)


def read_visitor_cookie(settings: Settings, cookies: Mapping[str, str]) -> str | None:
    """The visitor id in the request's visitor cookie, if there is a well-formed one."""
    value = cookies.get(settings.visitor_cookie_name)
    return value if value and _VISITOR_ID.match(value) else None
