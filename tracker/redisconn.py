"""How the product's processes open Redis clients: one protocol, one set of defaults.

The protocol is stated, not left to redis-py's default: redis-py 8 switched its default
from RESP2 to RESP3, which adds a ``HELLO`` round trip to every new connection (the offer
API drops a connection on each timed-out read and must reconnect cheaply) and changes the
shape of some replies. Every client here speaks RESP2, as the code was written and tested
for, whatever redis-py version is installed.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

RESP_PROTOCOL = 2
# Work off the request path (worker, trainer, segment learner, CLI) waits this long at most.
BACKGROUND_TIMEOUT_SECONDS = 5.0


def background_client(
    url: str, *, timeout_seconds: float = BACKGROUND_TIMEOUT_SECONDS, **options: Any
) -> Redis:
    """An asyncio client whose every connect, send and read is bounded by ``timeout_seconds``."""
    return Redis.from_url(
        url,
        protocol=RESP_PROTOCOL,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        **options,
    )
