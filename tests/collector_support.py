"""Builders shared by the collector tests (imported as a plain module from ``tests/``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

DEFAULT_CLIENT = ("203.0.113.77", 50123)


def now_ms() -> int:
    return int(time.time() * 1000)


def page_view(site_id: str, visitor_id: str = "visitor-0001", **fields: Any) -> dict[str, Any]:
    """A valid page_view event with a fresh event_id."""
    return {
        "type": "page_view",
        "event_id": str(uuid.uuid4()),
        "ts": now_ms(),
        "site_id": site_id,
        "visitor_id": visitor_id,
        "url": "https://shop.example/",
        **fields,
    }


def product_view(site_id: str, visitor_id: str = "visitor-0001", **fields: Any) -> dict[str, Any]:
    return {
        "type": "product_view",
        "event_id": str(uuid.uuid4()),
        "ts": now_ms(),
        "site_id": site_id,
        "visitor_id": visitor_id,
        "product_id": "sku-1",
        "category": "shoes",
        "price": 49.5,
        "currency": "EUR",
        **fields,
    }


@asynccontextmanager
async def running(app: FastAPI, client: tuple[str, int] = DEFAULT_CLIENT) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run (ASGITransport does not), and an HTTP client on it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector.test") as http:
            yield http
