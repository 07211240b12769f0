"""Link proxies, in-process against local TCP servers: every condition really acts on
TCP streams, existing connections included, and expires by itself."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chaosaa.lab.proxy import LinkProxy

pytestmark = [pytest.mark.lab, pytest.mark.timeout(60)]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _listener() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    s.setblocking(False)
    return s


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _stream(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Sends 1 KiB every 10 ms until the peer goes away (bounded: 60 s at most)."""
    with contextlib.suppress(ConnectionError):
        for _ in range(6000):
            writer.write(b"x" * 1024)
            await writer.drain()
            await asyncio.sleep(0.01)
    writer.close()


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    total = 0
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            total += len(data)
        writer.write(str(total).encode())
        await writer.drain()
    writer.close()


class Rig:
    def __init__(self, proxy: LinkProxy, admin: str, ports: dict[str, int]) -> None:
        self.proxy = proxy
        self.admin = admin
        self.ports = ports

    async def add(self, session: aiohttp.ClientSession, **cond: Any) -> dict[str, Any]:
        async with session.post(f"{self.admin}/conditions", json=cond) as r:
            body: dict[str, Any] = await r.json()
            assert r.status == 201, body
            return body


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    servers = []
    upstreams = {}
    handlers: set[asyncio.Task[Any]] = set()

    def tracked(handler: Handler) -> Handler:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            await handler(reader, writer)

        return run

    for name, handler in (("echo", _echo), ("stream", _stream), ("sink", _sink)):
        srv = await asyncio.start_server(tracked(handler), "127.0.0.1", 0)
        servers.append(srv)
        upstreams[name] = srv.sockets[0].getsockname()[1]
    proxy = LinkProxy()
    await proxy.start()
    ports = {}
    for name, port in upstreams.items():
        link = await proxy.add_link(name, _listener(), ("127.0.0.1", port))
        ports[name] = link.listen_port
    runner = web.AppRunner(proxy.admin_app())
    await runner.setup()
    admin_sock = _listener()
    site = web.SockSite(runner, admin_sock)
    await site.start()
    admin = f"http://127.0.0.1:{admin_sock.getsockname()[1]}"
    try:
        yield Rig(proxy, admin, ports)
    finally:
        await proxy.close()
        await runner.cleanup()
        for srv in servers:
            srv.close()
            await srv.wait_closed()
        # Upstream handlers notice the proxy's resets on their next read or write: let
        # them finish (and close their writers) before the event loop goes away.
        pending = {t for t in handlers if not t.done()}
        if pending:
            await asyncio.wait(pending, timeout=2)


async def _round_trip(port: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        started = time.monotonic()
        writer.write(b"ping")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        return time.monotonic() - started
    finally:
        writer.close()


async def _count_bytes(reader: asyncio.StreamReader, seconds: float) -> int:
    """Bytes received within ``seconds``; -1 if the connection was reset or closed."""
    total = 0
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            data = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            break
        except ConnectionError:
            return -1
        if not data:
            return -1
        total += len(data)
    return total


async def test_latency_delays_each_round_trip(rig: Rig) -> None:
    baseline = await _round_trip(rig.ports["echo"])
    async with aiohttp.ClientSession() as s:
        await rig.add(
            s, type="latency", delay=0.15, targets=[{"link": "echo", "dir": "up"}], ttl=10
        )
    rtts = [await _round_trip(rig.ports["echo"]) for _ in range(3)]
    assert baseline < 0.05
    assert all(0.15 <= r < 0.4 for r in rtts), rtts


async def test_bandwidth_limits_measured_throughput(rig: Rig) -> None:
    async with aiohttp.ClientSession() as s:
        await rig.add(
            s, type="bandwidth", rate=100_000, targets=[{"link": "sink", "dir": "up"}], ttl=10
        )
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ports["sink"])
    payload = b"y" * 150_000
    started = time.monotonic()
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    assert int(await asyncio.wait_for(reader.read(), 10)) == len(payload)
    elapsed = time.monotonic() - started
    writer.close()
    # 150 kB at 100 kB/s: 1.5 s, minus the small burst the bucket allows.
    assert 1.3 <= elapsed <= 2.6, elapsed


async def test_blackhole_drop_resets_inflight_and_new_connections(rig: Rig) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ports["stream"])
    assert await _count_bytes(reader, 0.3) > 0
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", rig.ports["echo"])
    assert await _round_trip(rig.ports["echo"]) < 0.5
    async with aiohttp.ClientSession() as s:
        await rig.add(
            s, type="blackhole", mode="drop", targets=[{"link": "stream"}, {"link": "echo"}], ttl=10
        )
    # An idle connection is reset too, without waiting for its next byte.
    assert await _count_bytes(idle_reader, 0.3) == -1
    idle_writer.close()
    started = time.monotonic()
    assert await _count_bytes(reader, 2.0) == -1, "in-flight stream was not cut"
    assert time.monotonic() - started < 0.5
    writer.close()
    r2, w2 = await asyncio.open_connection("127.0.0.1", rig.ports["stream"])
    assert await _count_bytes(r2, 1.0) == -1, "new connection was not refused"
    w2.close()


async def test_blackhole_hang_holds_inflight_stream_then_expires_by_itself(rig: Rig) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ports["stream"])
    assert await _count_bytes(reader, 0.3) > 0
    async with aiohttp.ClientSession() as s:
        await rig.add(
            s, type="blackhole", mode="hang", targets=[{"link": "stream", "dir": "down"}], ttl=1.5
        )
    await _count_bytes(reader, 0.1)  # drain what was already on the wire
    held = await _count_bytes(reader, 0.8)
    assert held == 0, f"{held} bytes passed a hang blackhole"
    # No revert call: the TTL alone must lift it, and held data then flows again.
    resumed = await _count_bytes(reader, 1.5)
    assert resumed > 10_000, resumed
    assert rig.proxy.conditions == {}
    writer.close()


async def test_hang_holds_new_connections_silently(rig: Rig) -> None:
    async with aiohttp.ClientSession() as s:
        await rig.add(s, type="blackhole", mode="hang", targets=[{"link": "echo"}], ttl=10)
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ports["echo"])
    writer.write(b"ping")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(4), 0.5)
    rig.proxy.remove_all()
    assert await asyncio.wait_for(reader.readexactly(4), 2) == b"ping"
    writer.close()


async def test_reset_closes_existing_connections(rig: Rig) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ports["stream"])
    assert await _count_bytes(reader, 0.2) > 0
    async with aiohttp.ClientSession() as s, s.post(f"{rig.admin}/links/stream/reset") as r:
        assert (await r.json())["closed"] == 1
    assert await _count_bytes(reader, 1.0) == -1
    writer.close()
    assert await _round_trip(rig.ports["echo"]) < 0.5  # other links unaffected


async def test_loss_stalls_chunks_for_a_retransmission_timeout(rig: Rig) -> None:
    async with aiohttp.ClientSession() as s:
        await rig.add(s, type="loss", percent=100, targets=[{"link": "echo", "dir": "up"}], ttl=10)
    # 100 % loss: the SYN waits one initial RTO (1 s) and the chunk one RTO (0.2 s).
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ports["echo"])
    writer.write(b"ping")
    await writer.drain()
    rig.proxy.remove_all()  # lift it once the connection waits in admission
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    assert time.monotonic() - started >= 0.2
    writer.close()


async def test_conditions_expire_and_renew(rig: Rig) -> None:
    async with aiohttp.ClientSession() as s:
        cond = await rig.add(
            s, id="c1", type="latency", delay=0.01, targets=[{"link": "echo"}], ttl=0.4
        )
        assert cond["id"] == "c1"
        await asyncio.sleep(0.25)
        async with s.post(f"{rig.admin}/conditions/c1/renew", json={"ttl": 0.4}) as r:
            assert r.status == 200
        await asyncio.sleep(0.25)
        async with s.get(f"{rig.admin}/conditions") as r:
            assert [c["id"] for c in (await r.json())["conditions"]] == ["c1"]
        await asyncio.sleep(0.35)
        async with s.get(f"{rig.admin}/conditions") as r:
            assert (await r.json())["conditions"] == []
        async with s.post(f"{rig.admin}/conditions/c1/renew", json={"ttl": 1}) as r:
            assert r.status == 404


@pytest.mark.parametrize(
    "body",
    [
        {"type": "latency", "targets": [{"link": "echo"}], "ttl": 5},  # no delay
        {"type": "blackhole", "targets": [{"link": "nope"}], "ttl": 5},
        {"type": "blackhole", "targets": [{"link": "echo"}]},  # no ttl
        {"type": "teleport", "targets": [{"link": "echo"}], "ttl": 5},
        {"type": "loss", "percent": 150, "targets": [{"link": "echo"}], "ttl": 5},
    ],
)
async def test_invalid_conditions_are_rejected(rig: Rig, body: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as s, s.post(f"{rig.admin}/conditions", json=body) as r:
        assert r.status == 400
        assert (await r.json())["error"]
    assert rig.proxy.conditions == {}


async def test_proxy_metrics_count_bytes(rig: Rig) -> None:
    await _round_trip(rig.ports["echo"])
    await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as s, s.get(f"{rig.admin}/metrics") as r:
        text = await r.text()
    assert 'chaosaa_proxy_bytes_total{direction="up",link="echo"} 4.0' in text
    assert 'chaosaa_proxy_connections_total{link="echo"} 1.0' in text


async def test_hang_stops_a_throttled_chunk_midway(rig: Rig) -> None:
    """A chunk being trickled out by a bandwidth limit must not finish under a new hang:
    every piece is gated by the link's current state, not by the state it started with."""
    async with aiohttp.ClientSession() as s:
        await rig.add(
            s, type="bandwidth", rate=20_000, targets=[{"link": "echo", "dir": "down"}], ttl=10
        )
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ports["echo"])
    writer.write(b"z" * 60_000)  # one echo chunk: ~3 s at 20 kB/s
    await writer.drain()
    assert await _count_bytes(reader, 0.5) > 0
    async with aiohttp.ClientSession() as s:
        await rig.add(s, type="blackhole", targets=[{"link": "echo", "dir": "down"}], ttl=10)
    await _count_bytes(reader, 0.05)  # what was already on the wire
    held = await _count_bytes(reader, 0.6)
    assert held == 0, f"{held} bytes of a throttled chunk passed a hang"
    writer.close()


async def test_conditions_report_their_enforcement_per_link(rig: Rig) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ports["stream"])
    assert await _count_bytes(reader, 0.2) > 0
    async with aiohttp.ClientSession() as s:
        cond = await rig.add(
            s, id="cut", type="blackhole", mode="drop", targets=[{"link": "stream"}], ttl=10
        )
        assert cond["inEffect"] is True
        assert {(e["link"], e["dir"]) for e in cond["enforced"]} == {
            ("stream", "up"),
            ("stream", "down"),
        }
        assert all(e["effective"] and e["uncut"] == 0 for e in cond["enforced"])
        slow = await rig.add(
            s, type="latency", delay=0.05, targets=[{"link": "echo", "dir": "up"}], ttl=10
        )
        assert slow["inEffect"] is True and len(slow["enforced"]) == 1
        async with s.get(f"{rig.admin}/links") as r:
            links = {link["name"]: link for link in (await r.json())["links"]}
    assert links["echo"]["state"]["up"]["delay"] == 0.05
    assert links["echo"]["state"]["down"]["delay"] == 0
    assert links["sink"]["state"]["up"] == links["sink"]["state"]["down"]
    assert links["sink"]["state"]["up"]["blackhole"] is None
    assert await _count_bytes(reader, 0.3) == -1
    writer.close()


JITTER: dict[str, Any] = {
    "id": "j",
    "type": "latency",
    "delay": 0.005,
    "jitter": 0.004,
    "targets": [{"link": "echo"}],
    "ttl": 10,
}


async def test_streams_stay_intact_when_conditions_come_and_go(rig: Rig) -> None:
    """Switching between the direct path and the queued path keeps every byte in order."""
    payload = random.Random(7).randbytes(3 * 1024 * 1024)
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ports["echo"])

    async def send() -> None:
        for i in range(0, len(payload), 100_000):
            writer.write(payload[i : i + 100_000])
            await writer.drain()
            if i == 1_000_000:
                rig.proxy.add_condition(JITTER)
            elif i == 2_000_000:
                rig.proxy.remove("j")

    sender = asyncio.create_task(send())
    echoed = await asyncio.wait_for(reader.readexactly(len(payload)), 20)
    await sender
    writer.close()
    assert echoed == payload
