"""The shop's "Your data" page: the shop's server, as a site owner's would, reads the
visitor's own profile from the offer API and asks for its erasure.

The browser never holds the signing key or the admin token: the shop's server
signs a short-lived self-access link for the visitor id in the visitor's own
first-party cookie (``GET /v1/me``) and calls the authenticated erasure endpoint
(``POST /v1/admin/erase``) on the visitor's behalf.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from tracker.serve.access import sign_access
from tracker.settings import Settings

LINK_SECONDS = 300


class VisitorDataUnavailable(Exception):
    """The offer API could not be asked right now."""


@dataclass(frozen=True)
class VisitorDataClient:
    api_url: str
    site_id: str
    settings: Settings

    async def profile(self, visitor_id: str) -> dict[str, Any] | None:
        """The visitor's own copy of what is stored about them; None when nothing is."""
        expires = int(time.time()) + LINK_SECONDS
        sig = sign_access(self.site_id, visitor_id, expires, self.settings.access_signing_key)
        params = {"site": self.site_id, "visitor": visitor_id, "expires": expires, "sig": sig}
        try:
            async with httpx.AsyncClient(timeout=3.0) as http:
                response = await http.get(f"{self.api_url}/v1/me", params=params)
        except httpx.HTTPError as exc:
            raise VisitorDataUnavailable(str(exc)) from exc
        if response.status_code != 200:
            raise VisitorDataUnavailable(f"offer API answered {response.status_code}: {response.text[:200]}")
        body = response.json()
        return body if body.get("profile") else None

    async def erase(self, visitor_id: str) -> str:
        """Ask for the visitor's erasure; returns the request id to follow it with."""
        try:
            async with httpx.AsyncClient(timeout=10.0) as http:
                response = await http.post(
                    f"{self.api_url}/v1/admin/erase",
                    json={"site_id": self.site_id, "visitor_id": visitor_id},
                    headers={"Authorization": f"Bearer {self.settings.admin_token}"},
                )
        except httpx.HTTPError as exc:
            raise VisitorDataUnavailable(str(exc)) from exc
        if response.status_code != 202:
            raise VisitorDataUnavailable(f"offer API answered {response.status_code}: {response.text[:200]}")
        return str(response.json()["request_id"])

    async def erasure_status(self, request_id: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=3.0) as http:
                response = await http.get(
                    f"{self.api_url}/v1/admin/erase/{request_id}",
                    headers={"Authorization": f"Bearer {self.settings.admin_token}"},
                )
        except httpx.HTTPError as exc:
            raise VisitorDataUnavailable(str(exc)) from exc
        if response.status_code != 200:
            raise VisitorDataUnavailable(f"offer API answered {response.status_code}")
        return dict(response.json())
