"""The offer API's lean Redis commands (tracker/serve/lean_redis.py) against the session's Redis:
replies, error replies, connections the server closed, cancelled commands and the bound on
connections."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tracker.serve.lean_redis import LeanCommands, pack_command
from tracker.serve.store import MAX_CONNECTIONS, redis_client
from tracker.settings import Settings

pytestmark = pytest.mark.integration


def test_pack_command_is_the_redis_protocol() -> None:
    assert pack_command("MGET", "a", b"bc") == b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$2\r\nbc\r\n"
    assert pack_command("GET", "é") == b"*2\r\n$3\r\nGET\r\n$2\r\n\xc3\xa9\r\n"


async def _with_commands(redis_url: str, test, max_connections: int = MAX_CONNECTIONS) -> None:
    client: Redis = redis_client(Settings(redis_url=redis_url))
    commands = LeanCommands(client.connection_pool, max_connections)
    try:
        await test(client, commands)
    finally:
        await commands.aclose()
        await client.aclose()


def _key() -> str:
    return f"lean-test:{uuid.uuid4().hex}"


def test_replies_and_error_replies(stack) -> None:
    async def test(client: Redis, commands: LeanCommands) -> None:
        a, b = _key(), _key()
        await client.set(a, b"profile")
        assert await commands.execute(pack_command("MGET", a, b)) == [b"profile", None]
        await client.set(b, b"not a list")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await commands.execute(pack_command("LPOP", b))
        # The connection still works for the next command.
        assert await commands.execute(pack_command("GET", a)) == b"profile"

    asyncio.run(_with_commands(stack.redis_url, test))


def test_a_connection_the_server_closed_while_idle_is_replaced_without_failing_the_command(stack) -> None:
    async def test(client: Redis, commands: LeanCommands) -> None:
        key = _key()
        await client.set(key, b"v1")
        first = await commands.execute(pack_command("CLIENT", "ID"))
        assert await client.execute_command("CLIENT", "KILL", "ID", str(first)) == 1
        assert await commands.execute(pack_command("GET", key)) == b"v1"
        assert await commands.execute(pack_command("CLIENT", "ID")) != first  # on a new connection

    asyncio.run(_with_commands(stack.redis_url, test))


def test_a_cancelled_command_closes_its_connection_so_its_reply_is_never_read_by_the_next(stack) -> None:
    async def test(client: Redis, commands: LeanCommands) -> None:
        queue, key = _key(), _key()
        await client.set(key, b"mine")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await commands.execute(pack_command("BLPOP", queue, "30"))
        # Redis sees the connection close (a blocked client left waiting would block for 30 s).
        for _ in range(500):
            if not (await client.info("clients"))["blocked_clients"]:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the cancelled BLPOP still blocks: its connection was not closed")
        await client.rpush(queue, b"late")  # would be the cancelled BLPOP's reply, were it still waiting
        assert await commands.execute(pack_command("GET", key)) == b"mine"
        assert await client.lpop(queue) == b"late"

    asyncio.run(_with_commands(stack.redis_url, test))


def test_commands_wait_for_one_of_at_most_max_connections(stack) -> None:
    async def test(client: Redis, commands: LeanCommands) -> None:
        queue = _key()
        # Ten blocking pops at once on two connections: they take turns, and only two are made.
        await asyncio.gather(*(commands.execute(pack_command("BLPOP", queue, "0.05")) for _ in range(10)))
        assert len(commands._idle) == 2

    asyncio.run(_with_commands(stack.redis_url, test, max_connections=2))
