"""The request path's one Redis command, without redis-py's client and pool layers around it.

Each offer request reads one visitor with one ``MGET``. Through ``Redis.execute_command``
that read also runs a retry wrapper, observability hooks, a pool behind a condition, a
lock and a timeout, and a readiness check of the socket (a system call) before each
command. :class:`LeanCommands` keeps redis-py's connections (the URL, ``AUTH``, ``SELECT``,
TLS, the hiredis parser) and sends each packed command on an idle one itself.

What the skipped layers did is done here: a connection whose command failed or was
cancelled midway is closed and dropped (its reply, unread, must never be taken for the next
command's); a connection the server closed while idle (Redis restarted, an idle timeout)
fails its next command, which is then sent once more on a new connection, as redis-py's
readiness check would have reconnected; at most ``max_connections`` are open at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError


def pack_command(*args: bytes | str) -> bytes:
    """A command in the Redis protocol (RESP), e.g. ``pack_command("MGET", key1, key2)``."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class LeanCommands:
    """At most ``max_connections`` connections made by ``pool`` (its settings, never its
    bookkeeping); a command waits for a free one. Bound each call with ``asyncio.timeout``."""

    def __init__(self, pool: ConnectionPool, max_connections: int) -> None:
        self._pool = pool
        self._idle: list[AbstractConnection] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def execute(self, packed: bytes) -> Any:
        """Send one packed command and return its reply (an error reply raises redis-py's
        ``ResponseError``; a lost connection ``ConnectionError``)."""
        async with self._slots:
            if self._idle:
                connection = self._idle.pop()
                try:
                    return await self._on(connection, packed)
                except (RedisConnectionError, OSError):
                    pass  # closed while idle: once more on a new connection
            return await self._on(self._pool.make_connection(), packed)

    async def _on(self, connection: AbstractConnection, packed: bytes) -> Any:
        try:
            await connection.send_packed_command(packed, check_health=False)
            reply = await connection.read_response()
        except BaseException:
            # A send or read that failed or was cancelled midway has already closed the
            # connection (redis-py does, so that an unread reply is never taken for the next
            # command's); after an error reply it is still open. Dropped either way, closed.
            await connection.disconnect(nowait=True)
            raise
        self._idle.append(connection)
        return reply

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()
