"""Helpers for the database tier: a TCP forwarder that can hold a link, the rule that a
missing server skips locally and fails in CI, and the "nothing left behind" checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from chaosaa.canary import CanaryProbe, Connection, store_for
from chaosaa.lab.systems import Address, DatabaseSystem, RegionDatabase
from tests.conftest import missing
from tests.lab.fixtures import metric, processes_mentioning

T = TypeVar("T")


def require(system: type[DatabaseSystem]) -> None:
    reason = system.unavailable()
    if reason is not None:
        missing(f"{system.name}: {reason}")


class Forwarder:
    """A plain TCP forwarder on 127.0.0.1 that can hold traffic (like a cut link that heals:
    bytes wait, nothing is lost), standing in for the lab's link proxy."""

    def __init__(self, upstream: Address) -> None:
        self.upstream = upstream
        self.bytes = 0
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Address:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return Address("127.0.0.1", int(port))

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream.host, self.upstream.port), 5
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        self._writers |= {writer, up_writer}
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._open.wait()
                self.bytes += len(data)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def forwarders(system: DatabaseSystem) -> AsyncIterator[dict[str, Forwarder]]:
    """A forwarder on every path of ``system`` (key: path key)."""
    out = {p.key: Forwarder(p.upstream) for p in system.paths()}
    try:
        yield out
    finally:
        for f in out.values():
            await f.close()


async def routes(fwd: dict[str, Forwarder]) -> dict[str, Address]:
    return {key: await f.start() for key, f in fwd.items()}


async def eventually(
    check: Callable[[], Awaitable[T | None]], time_limit: float, what: str, interval: float = 0.1
) -> T:
    deadline = time.monotonic() + time_limit
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except Exception as exc:
            last = exc
        else:
            if last is not None and last is not False:
                return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {time_limit}s waiting for {what}; last={last!r}")


async def exporter_value(
    system: DatabaseSystem, region: str, name: str, **labels: str
) -> float | None:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as s,
        s.get(f"{system.exporters[region].url}/metrics") as resp,
    ):
        text = await resp.text()
    return metric(text, name, **labels)


def canary_connections(
    dbs: dict[str, RegionDatabase], table: str = "chaosaa_canary"
) -> dict[str, Connection]:
    """Per region a canary connection to the region's own server (its read endpoint)."""
    return {
        r: Connection(
            d.read.kind,
            d.read.host,
            d.read.port,
            d.read.user,
            d.read.password,
            d.read.database,
            table,
        )
        for r, d in dbs.items()
    }


def canary_probe(dbs: dict[str, RegionDatabase], **kw: Any) -> CanaryProbe:
    return CanaryProbe({r: store_for(c) for r, c in canary_connections(dbs).items()}, **kw)


def shm_segments(users: Sequence[str] = ("postgres", "mysql")) -> set[str]:
    """SysV shared-memory segments (key, id) owned by the database users."""
    import pwd

    uids = set()
    for u in users:
        with contextlib.suppress(KeyError):
            uids.add(str(pwd.getpwnam(u).pw_uid))
    uids.add(str(os.geteuid()))
    out = set()
    with open("/proc/sysvipc/shm") as f:
        header = f.readline().split()
        for line in f:
            row = dict(zip(header, line.split(), strict=False))
            if row.get("uid") in uids:
                out.add(f"{row['key']}/{row['shmid']}")
    return out


def leftovers(data_root: Path) -> list[str]:
    problems = []
    if data_root.exists():
        problems.append(f"data directory {data_root} still exists")
    pids = processes_mentioning(str(data_root))
    if pids:
        problems.append(f"processes still running: {pids}")
    return problems
