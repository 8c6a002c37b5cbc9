"""Each response in one write (tracker/http_protocol.py): the transport wrapper on a real event
loop, and uvicorn serving through it over real sockets."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from tracker.devstack.process import free_port
from tracker.http_protocol import CoalescingHttpToolsProtocol, CoalescingTransport, received_at


class RecordingTransport:
    """Stands in for a socket transport: records each write (one write is one send())."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.paused = False

    def write(self, data: bytes) -> None:
        # Recorded even after close (not asserted here: an error raised in the event loop's
        # flush callback would be logged, not seen by the test); the tests check ``writes``.
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.paused = True


async def test_a_head_and_body_written_in_one_pass_leave_in_one_write() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"ok")
    assert inner.writes == []  # held until the loop's pass ends
    assert transport.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n") + 2
    await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    # The next response is a write of its own: nothing waits for a later one.
    transport.writelines([b"HTTP/1.1 204 No Content\r\n\r\n"])
    await asyncio.sleep(0)
    assert inner.writes[1:] == [b"HTTP/1.1 204 No Content\r\n\r\n"]


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, loop)  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n\r\n")
    transport.close()
    assert inner.writes == [b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n\r\n"]
    assert inner.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing left: no write after close
    assert len(inner.writes) == 1

    aborted = RecordingTransport()
    transport = CoalescingTransport(aborted, loop)  # type: ignore[arg-type]
    transport.write(b"partial")
    transport.abort()
    await asyncio.sleep(0)
    assert (aborted.writes, aborted.aborted) == ([], True)


async def test_writes_held_when_the_peer_goes_away_are_dropped_and_the_rest_passes_through() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    inner.closed = True  # connection lost before the pass ended
    await asyncio.sleep(0)
    assert inner.writes == []
    transport.pause_reading()  # not wrapped: goes straight to the socket's transport
    assert inner.paused and transport.is_closing()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain ASGI app: echoes the path, in two parts when asked (a streamed response), or
    says how long ago the server began reading the request (``/waited``)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = scope["path"].encode()
    if scope["path"] == "/waited":
        body = f"{time.perf_counter() - received_at(scope):.6f}".encode()
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"two"})
        return
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def port() -> Iterator[int]:
    chosen = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=chosen, http=CoalescingHttpToolsProtocol, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield chosen
    server.should_exit = True
    thread.join(timeout=20)


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65_536):
        data += chunk
    return data


def test_uvicorn_answers_pipelined_streamed_and_closing_requests_through_it(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(
            b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        answer = read_until_closed(sock)
    responses = answer.split(b"HTTP/1.1 ")[1:]
    assert [r.split(b"\r\n", 1)[0] for r in responses] == [b"200 OK"] * 3
    assert responses[0].endswith(b"\r\n\r\n/first")
    assert responses[1].endswith(b"\r\n\r\n4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n")  # chunked, both parts
    assert b"connection: close" in responses[2].lower() and responses[2].endswith(b"\r\n\r\n/last")


def test_a_request_is_timed_from_its_arrival_not_from_when_its_app_starts(port: int) -> None:
    """The scope says when the server began reading the request: a request pipelined behind a
    50 ms one arrives at once but starts only after it, and its time counts that wait (the
    services' request durations start there)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(
            b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /waited HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        answer = read_until_closed(sock)
    waited = float(answer.rsplit(b"\r\n\r\n", 1)[1])
    assert 0.05 <= waited < 10
