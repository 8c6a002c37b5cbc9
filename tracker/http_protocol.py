"""uvicorn's httptools protocol, answering each response with one ``send()`` instead of two.

uvicorn writes a response's head when the app sends ``http.response.start`` and its
body when the app sends ``http.response.body``: two ``send()`` system calls, two
TCP segments and, on loopback or a virtual machine, two wake-ups of the client. On
the benchmark machine (a 2-vCPU VM) the two writes were ~14 % of the offer API's
CPU time in a py-spy profile at 1,000 requests/s (docs/BENCHMARKS.md). The
transport here holds what is written during one pass of the event loop and sends
it together at the end of that pass: a small response leaves in one segment, as
aiohttp does for small responses (aio-libs/aiohttp#10991). Nothing waits longer
than the current pass: a streamed response's parts still leave as they are sent.

The protocol also notes when it began reading each request (:data:`RECEIVED_AT` in
the ASGI scope, read with :func:`received_at`): the services' request durations start
there, so they include the wait for this process's event loop (a request's app only
starts once the loop gets to its task, behind the requests before it), which the
client waits through too, as a proxy's request time does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Wraps a transport: writes of one event-loop pass leave in one ``write``; the rest passes through."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what was written so far (a no-op once nothing is held, or the peer is gone)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if self._transport.is_closing():
            return  # closed under us (the peer went away): nobody to send to
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()  # a response written just before closing (connection: close) still leaves
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(data) for data in self._pending)

    def __getattr__(self, name: str) -> Any:
        # get_extra_info, is_closing, pause_reading, resume_reading, set_protocol, ...
        return getattr(self._transport, name)


# ASGI scope key: time.perf_counter() when the server began reading the request.
RECEIVED_AT = "tracker.received_at"


def received_at(scope: Mapping[str, Any]) -> float:
    """When the server began reading this request (``time.perf_counter()``); now, under a server
    that does not say (tests calling the app directly)."""
    return scope.get(RECEIVED_AT) or time.perf_counter()


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`CoalescingTransport` (``uvicorn.Config(http=...)``),
    noting when each request began to arrive (:data:`RECEIVED_AT`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_message_begin(self) -> None:
        super().on_message_begin()  # makes the request's scope
        self.scope[RECEIVED_AT] = time.perf_counter()  # type: ignore[literal-required]
