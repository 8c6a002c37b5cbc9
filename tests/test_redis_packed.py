"""PackedPipeline, the stream worker's bulk write path, against the session's real Redis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from redis.exceptions import ResponseError

from tracker.redisconn import PackedPipeline, background_client


async def test_sets_with_expiry_and_deletes_are_applied_in_order(stack: Any) -> None:
    client = background_client(stack.redis_url)
    prefix = f"test:packed:{uuid.uuid4().hex[:8]}"
    try:
        pipe = PackedPipeline()
        values = {f"{prefix}:{n}": f"value {n} é".encode() * (n + 1) for n in range(300)}
        for key, value in values.items():
            pipe.set_ex(key, value, 120)
        pipe.command("DEL", f"{prefix}:0", f"{prefix}:1")
        pipe.set_ex(f"{prefix}:1", b"again", 60)
        assert len(pipe) == 302
        await pipe.execute(client)
        assert len(pipe) == 0  # sent: a pipeline can be reused
        assert await client.get(f"{prefix}:0") is None
        assert await client.get(f"{prefix}:1") == b"again"
        assert await client.get(f"{prefix}:299") == values[f"{prefix}:299"]
        assert 110 <= await client.ttl(f"{prefix}:2") <= 120
        assert 50 <= await client.ttl(f"{prefix}:1") <= 60
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_an_error_reply_raises_and_the_client_stays_usable(stack: Any) -> None:
    client = background_client(stack.redis_url, max_connections=1)  # the same connection again
    key = f"test:packed:{uuid.uuid4().hex[:8]}"
    try:
        await client.rpush(key, b"a list, not a string")
        pipe = PackedPipeline()
        pipe.command("INCR", key)  # WRONGTYPE
        pipe.set_ex(f"{key}:after", b"x", 60)
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await pipe.execute(client)
        assert await client.ping()
        assert await client.lrange(key, 0, -1) == [b"a list, not a string"]
    finally:
        await client.delete(key, f"{key}:after")
        await client.aclose()
