"""The collector behind its real HTTP server: slow and oversized requests, graceful shutdown.

The first tests run uvicorn with the collector's configuration in a thread, on the
session's Kafka, and talk raw HTTP over sockets (a slowloris client is not something an
HTTP library will play). The shutdown test runs ``python -m tracker collector`` as an
operator would and sends it SIGTERM while a request is in flight.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
from collector_support import Tails, open_tails, page_view, serving

from tracker.collect.app import create_app
from tracker.devstack.process import free_port
from tracker.devstack.services import ServiceProcess
from tracker.settings import Settings, SiteConfig

pytestmark = pytest.mark.integration

# Generous bound for "the server answered or hung up": never a speed assertion.
SOCKET_DEADLINE_SECONDS = 15.0


@pytest.fixture
def server_settings(settings: Settings, site_id: str) -> Settings:
    return settings.model_copy(
        update={
            "sites": (SiteConfig(id=site_id),),
            "header_read_timeout_seconds": 0.5,
            "keep_alive_timeout_seconds": 1,
            "max_header_bytes": 4096,
        }
    )


@pytest.fixture
def base_url(server_settings: Settings) -> Iterator[str]:
    with serving(create_app(server_settings), server_settings) as url:
        yield url


@pytest.fixture
async def tails(settings: Settings) -> AsyncIterator[Tails]:
    async with open_tails(settings) as opened:
        yield opened


def connect(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=SOCKET_DEADLINE_SECONDS)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65_536):
        data += chunk
    return data


def request_bytes(site_id: str, event: dict, *, extra_headers: str = "") -> tuple[bytes, bytes]:
    body = orjson.dumps({"site_id": site_id, "events": [event]})
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: collector\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra_headers}\r\n"
    ).encode()
    return head, body


def test_a_well_behaved_request_over_a_socket_is_accepted(base_url: str, site_id: str) -> None:
    head, body = request_bytes(site_id, page_view(site_id))
    with connect(base_url) as sock:
        sock.sendall(head + body)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 202 ")


def test_headers_trickled_slower_than_the_header_timeout_are_cut_off(base_url: str) -> None:
    with connect(base_url) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: collector\r\n")
        answer = b""
        deadline = time.monotonic() + SOCKET_DEADLINE_SECONDS
        try:
            while time.monotonic() < deadline:  # one header byte every 0.1 s: never done
                sock.sendall(b"X")
                time.sleep(0.1)
        except OSError:  # the server hung up
            pass
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"Headers not received within 0.5 s" in answer


def test_a_connection_that_sends_nothing_is_closed(base_url: str) -> None:
    with connect(base_url) as sock:
        assert read_all(sock) == b""  # closed by the server, before our deadline


def test_oversized_headers_are_431(base_url: str, site_id: str) -> None:
    head, body = request_bytes(site_id, page_view(site_id), extra_headers=f"X-Junk: {'j' * 5000}\r\n")
    with connect(base_url) as sock:
        sock.sendall(head + body)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_idle_keep_alive_connections_are_closed(base_url: str, site_id: str) -> None:
    head, body = request_bytes(site_id, page_view(site_id))
    with connect(base_url) as sock:
        sock.sendall(head.replace(b"Connection: close", b"Connection: keep-alive") + body)
        answer = read_all(sock)  # returns only once the server closes the idle connection
    assert answer.startswith(b"HTTP/1.1 202 ")


async def test_sigterm_lets_a_request_in_flight_finish_and_its_events_reach_kafka(
    server_settings: Settings, site_id: str, tails: Tails, tmp_path: Path
) -> None:
    settings = server_settings.model_copy(
        update={"collector_port": free_port(), "header_read_timeout_seconds": 10.0}
    )
    collector = ServiceProcess("collector", settings, tmp_path)
    collector.start(timeout=60)
    event = page_view(site_id)
    head, body = request_bytes(site_id, event)
    try:
        with connect(f"http://127.0.0.1:{settings.collector_port}") as sock:
            sock.sendall(head + body[:10])  # the request has started: headers and part of the body
            await asyncio.sleep(0.3)
            pid = collector.process.pid
            assert pid is not None
            os.kill(pid, signal.SIGTERM)
            await asyncio.sleep(0.5)  # shutdown under way: the server stopped accepting
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", settings.collector_port), timeout=2).close()
            sock.sendall(body[10:])
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 202 "), answer[:300]
        proc = collector.process._proc
        assert proc is not None
        # uvicorn re-raises the signal once shut down, so the exit status says "terminated".
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        collector.stop()
    log = (tmp_path / "collector.log").read_text()
    assert "Waiting for connections to close" in log or "Waiting for background tasks" in log
    assert "Application shutdown complete" in log  # the lifespan ran: the producer was flushed and closed
    assert [str(t.event.event_id) for _, t, _ in await tails.events(site_id)] == [event["event_id"]]
