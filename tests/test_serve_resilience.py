"""The offer API when Redis misbehaves: one round trip per request, the circuit breaker,
and a real Redis stopped and started again under it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from serve_support import metric_value, offer_params, running, small_catalogue, store_profile, visitor

from tracker import keys
from tracker.devstack.process import free_port
from tracker.devstack.redis_server import RedisServer
from tracker.serve import create_app
from tracker.settings import Settings

pytestmark = pytest.mark.integration


class CountingProxy:
    """A TCP proxy in front of Redis that records the name of every command a client sends."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.commands: list[str] = []
        self.calls: list[tuple[str, str]] = []  # (command, first argument)
        self.connections = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def __aenter__(self) -> CountingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()

        pump = asyncio.create_task(downstream())
        try:
            while header := await reader.readline():  # RESP array: *<n>, then n bulk strings
                parts = [header]
                args = []
                for _ in range(int(header[1:])):
                    length_line = await reader.readline()
                    value = await reader.readexactly(int(length_line[1:]) + 2)
                    parts += [length_line, value]
                    args.append(value[:-2])
                self.commands.append(args[0].decode().upper())
                self.calls.append((self.commands[-1], args[1].decode() if len(args) > 1 else ""))
                up_writer.write(b"".join(parts))
                await up_writer.drain()
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            up_writer.close()
            writer.close()


def redis_port(settings: Settings) -> int:
    return int(settings.redis_url.rsplit(":", 1)[1].split("/")[0])


async def test_one_redis_command_per_offer_request(settings: Settings, site_id: str) -> None:
    known, unknown = visitor(site_id), visitor(site_id)
    await store_profile(settings, site_id, known, {"shoes": 3})
    async with CountingProxy(redis_port(settings)) as proxy:
        via_proxy = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{proxy.port}/0"})
        app = create_app(via_proxy, catalogue=small_catalogue())
        async with running(app) as client:
            await client.get("/v1/offers", params=offer_params(site_id, known))  # warm: the connection
            proxy.calls.clear()
            bodies = [
                (await client.get("/v1/offers", params=offer_params(site_id, who))).json()
                for who in (known, unknown, known, unknown)
            ]
            # An unknown slot cannot be filled whatever Redis says: no round trip at all.
            empty = (await client.get("/v1/offers", params=offer_params(site_id, known, "nowhere"))).json()
    assert [body["reason"] for body in bodies] == ["interest:shoes", "no_profile"] * 2
    assert empty["reason"] == "no_offer"
    # Not counted: GET (the click-model pointer probe, its own client) and a new connection's
    # handshake (CLIENT ...). Profile and caps come back from one MGET per request, and nothing is
    # written: the stream worker counts the offers served, from the decisions topic.
    calls = [call for call in proxy.calls if call[0] not in ("GET", "CLIENT", "HELLO")]
    assert calls == [("MGET", keys.profile(site_id, who)) for who in (known, unknown, known, unknown)]


async def test_dead_redis_trips_the_breaker_and_is_then_not_called(settings: Settings, site_id: str) -> None:
    attempts = 0

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        writer.close()  # a Redis that accepts and hangs up: every command fails at once

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    broken = settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{port}/0",
            "redis_breaker_failures": 3,
            "redis_breaker_reset_seconds": 300.0,  # stays open for the whole test
        }
    )
    try:
        async with running(create_app(broken, catalogue=small_catalogue())) as client:
            bodies = [
                (await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id)))).json()
                for _ in range(10)
            ]
            attempts_when_open = attempts
            more = [
                (await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id)))).json()
                for _ in range(20)
            ]
            attempts_after = attempts
            text = (await client.get("/metrics")).text
            ready = (await client.get("/readyz")).json()
    finally:
        server.close()
    assert all(
        (b["offer"]["id"], b["fallback"], b["personalised"]) == ("welcome", True, False)
        for b in bodies + more
    )
    assert [b["reason"] for b in bodies[:3]] == ["redis_unavailable"] * 3
    assert {b["reason"] for b in bodies[3:] + more} == {"circuit_open"}
    assert attempts_after == attempts_when_open  # once open, offer requests no longer touch Redis
    assert metric_value(text, "tracker_offer_redis_breaker_state") == 2
    assert metric_value(text, "tracker_offer_redis_breaker_opened_total") == 1
    assert metric_value(text, "tracker_offer_redis_errors_total", kind="circuit_open") == 27
    assert metric_value(text, "tracker_offer_requests_total", outcome="fallback") == 30
    assert (ready["status"], ready["redis_breaker"]) == ("degraded", "open")


@asynccontextmanager
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(data_dir=tmp_path / "redis", port=free_port())
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def wait_for(predicate, what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {seconds}s")
        await asyncio.sleep(0.05)


async def test_redis_stopped_then_restarted(settings: Settings, site_id: str, tmp_path: Path) -> None:
    """Redis dies under load: defaults at once (breaker open), then personalised offers again
    after it comes back, through a half-open probe, with no restart of the API."""
    async with own_redis(tmp_path) as redis_server:
        own = settings.model_copy(
            update={
                "redis_url": redis_server.url,
                "redis_timeout_seconds": 0.2,
                "redis_breaker_failures": 2,
                "redis_breaker_reset_seconds": 0.3,
            }
        )
        fan = visitor(site_id)
        await store_profile(own, site_id, fan, {"shoes": 3})
        async with running(create_app(own, catalogue=small_catalogue())) as client:

            async def offer() -> dict:
                return (await client.get("/v1/offers", params=offer_params(site_id, fan))).json()

            assert (await offer())["reason"] == "interest:shoes"

            await asyncio.to_thread(redis_server.stop)
            down = [await offer() for _ in range(6)]
            assert all(b["offer"]["id"] == "welcome" and b["fallback"] for b in down)
            assert [b["reason"] for b in down[:2]] == ["redis_unavailable"] * 2
            assert "circuit_open" in {b["reason"] for b in down[2:]}
            assert (await client.get("/readyz")).status_code == 200  # still ready: it serves defaults

            # Same port, empty memory (no persistence): the worker would rebuild profiles from Kafka.
            await asyncio.to_thread(redis_server.start)
            await store_profile(own, site_id, fan, {"shoes": 3})

            async def personalised_again() -> bool:
                return (await offer())["reason"] == "interest:shoes"

            await wait_for(personalised_again, "personalised offers did not come back")
            text = (await client.get("/metrics")).text
    assert metric_value(text, "tracker_offer_redis_breaker_state") == 0
    assert metric_value(text, "tracker_offer_redis_breaker_opened_total") >= 1
    assert metric_value(text, "tracker_offer_redis_errors_total", kind="connection") >= 2


async def test_redis_timeout_counts_as_failure_and_is_reported(settings: Settings, site_id: str) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hung = settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{port}/0",
            "redis_timeout_seconds": 0.05,
            "redis_breaker_failures": 2,
            "redis_breaker_reset_seconds": 300.0,
        }
    )
    try:
        async with running(create_app(hung, catalogue=small_catalogue())) as client:
            reasons = []
            for _ in range(4):
                response = await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id)))
                reasons.append(response.json()["reason"])
            text = (await client.get("/metrics")).text
    finally:
        server.close()
    assert reasons == ["redis_unavailable", "redis_unavailable", "circuit_open", "circuit_open"]
    assert metric_value(text, "tracker_offer_redis_errors_total", kind="timeout") == 2
    assert metric_value(text, "tracker_offer_redis_duration_seconds_count") == 2
