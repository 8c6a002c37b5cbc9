"""Running the collector with uvicorn, hardened against slow and oversized requests.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and the app bounds
the body read (``body_read_timeout_seconds``), but uvicorn has no deadline for the
request *headers*: a client that opens a connection and trickles header bytes (slowloris)
holds it forever, and llhttp accepts very large header blocks. :func:`protocol_class`
adds both limits to uvicorn's httptools protocol. Shutdown on SIGTERM/SIGINT is
graceful: uvicorn stops accepting, lets requests in flight finish for up to
``shutdown_grace_seconds``, then the app's lifespan flushes and closes the producer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tracker.http_protocol import CoalescingHttpToolsProtocol
from tracker.settings import Settings


def protocol_class(*, header_timeout: float, max_header_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline on each request's headers and a size cap
    (and each response in one write: :mod:`tracker.http_protocol`)."""

    class HardenedProtocol(CoalescingHttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            if self._header_timer is None:
                self._arm_header_timer()

        def on_url(self, url: bytes) -> None:
            self._count_header_bytes(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_header_bytes(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm_header_timer()
            super().on_headers_complete()

        def _count_header_bytes(self, n: int) -> None:
            self._header_bytes += n
            if self._header_bytes > max_header_bytes and not self.transport.is_closing():
                self._disarm_header_timer()
                self._send_and_close(
                    b"431 Request Header Fields Too Large", f"Headers over {max_header_bytes} bytes"
                )

        def _arm_header_timer(self) -> None:
            self._header_timer = self.loop.call_later(header_timeout, self._header_timeout)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                self._arm_header_timer()  # a request is being answered: look again later
                return
            if self._header_bytes:  # part of a request arrived: say why it is cut off
                self._send_and_close(
                    b"408 Request Timeout", f"Headers not received within {header_timeout:g} s"
                )
            else:  # nothing at all: just close, as for an idle keep-alive connection
                self.transport.close()

        def _send_and_close(self, status_line: bytes, message: str) -> None:
            body = message.encode()
            self.transport.write(
                b"HTTP/1.1 " + status_line + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
            )
            self.transport.close()

    return HardenedProtocol


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration of a collector: limits and timeouts from ``settings``."""
    options: dict[str, Any] = {
        "host": settings.collector_host,
        "port": settings.collector_port,
        "http": protocol_class(
            header_timeout=settings.header_read_timeout_seconds, max_header_bytes=settings.max_header_bytes
        ),
        "ws": "none",
        "lifespan": "on",
        # X-Forwarded-For is read by the app, and only from TRACKER_TRUSTED_PROXIES.
        "proxy_headers": False,
        "server_header": False,
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        "log_level": "info",
        "access_log": False,  # one line per request is a lot at thousands per second; metrics count them
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def serve(settings: Settings) -> None:
    """Run the collector on ``collector_host:collector_port`` until SIGTERM or Ctrl-C."""
    from tracker.collect.app import create_app

    uvicorn.Server(uvicorn_config(create_app(settings, settle_gc=True), settings)).run()
