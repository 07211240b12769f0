"""A switchable KV service on 127.0.0.1 for tests that need a real HTTP peer.

It speaks the same API as a lab demo node (``GET/PUT/DELETE /kv/{key}``,
``GET /internal/kv/{key}``), answers with ``X-Chaosaa-Region``, and can be switched, at
instants it records, between:

- ``up``: answer normally (optionally after ``delay`` seconds: a slow server);
- ``fail``: answer every request with ``fail_status`` (503);
- ``hang``: hold every request until the mode changes (then answer it normally) or
  ``hang_max`` seconds pass (then 504);
- ``reset``: drop the connection without answering.

Usage::

    async with SwitchableService("eu") as svc:
        off_at = svc.switch("fail")     # unix seconds, also kept in svc.switches
        ...
        on_at = svc.switch("up")

Replication for convergence/canary tests: ``svc.replicate_to(peer, delay=0.2)`` copies
every write to ``peer`` ``delay`` seconds later.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from aiohttp import web

Mode = Literal["up", "fail", "hang", "reset"]
MODES: tuple[Mode, ...] = ("up", "fail", "hang", "reset")


@dataclass(frozen=True)
class Switch:
    at: float  # unix seconds
    mode: Mode


@dataclass(frozen=True)
class Arrival:
    at: float  # unix seconds, when the handler started
    method: str
    key: str
    home: str | None


class SwitchableService:
    def __init__(
        self,
        region: str = "us",
        *,
        delay: float = 0.0,
        fail_status: int = 503,
        hang_max: float = 30.0,
        max_arrivals: int = 1_000_000,
    ) -> None:
        self.region = region
        self.delay = delay
        self.fail_status = fail_status
        self.hang_max = hang_max
        self.mode: Mode = "up"
        self.switches: list[Switch] = []
        self.arrivals: list[Arrival] = []
        self.max_arrivals = max_arrivals
        self.store: dict[str, str] = {}
        self._unhang = asyncio.Event()
        self._unhang.set()
        self._peers: list[tuple[SwitchableService, float]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ control

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def switch(self, mode: Mode) -> float:
        """Change the mode now; return the instant (unix seconds), also recorded."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        at = time.time()
        self.mode = mode
        if mode == "hang":
            self._unhang.clear()
        else:
            self._unhang.set()
        self.switches.append(Switch(at, mode))
        return at

    def replicate_to(self, peer: SwitchableService, delay: float) -> None:
        self._peers.append((peer, delay))

    def arrivals_per_second(self, since: float, until: float) -> list[int]:
        """Requests that arrived in each whole second of [since, until)."""
        counts = [0] * max(0, int(until - since))
        for a in self.arrivals:
            i = int(a.at - since)
            if since <= a.at < until and i < len(counts):
                counts[i] += 1
        return counts

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/kv/{key}", self._kv)
        app.router.add_get("/internal/kv/{key}", self._internal)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._unhang.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ handlers

    async def _gate(self, request: web.Request) -> web.StreamResponse | None:
        """Apply the current mode; None means: serve the request normally."""
        if len(self.arrivals) < self.max_arrivals:
            self.arrivals.append(
                Arrival(
                    time.time(),
                    request.method,
                    request.match_info.get("key", request.path),
                    request.headers.get("X-Chaosaa-Home"),
                )
            )
        if self.mode == "hang":
            try:
                await asyncio.wait_for(self._unhang.wait(), self.hang_max)
            except TimeoutError:
                return self._answer(504, b"hung")
        if self.mode == "fail":
            return self._answer(self.fail_status, b"switched off")
        if self.mode == "reset":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing to answer on an aborted connection
        if self.delay:
            await asyncio.sleep(self.delay)
        return None

    def _answer(self, status: int, body: bytes) -> web.Response:
        return web.Response(status=status, body=body, headers={"X-Chaosaa-Region": self.region})

    async def _kv(self, request: web.Request) -> web.StreamResponse:
        gated = await self._gate(request)
        if gated is not None:
            return gated
        key = request.match_info["key"]
        if request.method == "GET":
            value = self.store.get(key)
            if value is None:
                return self._answer(404, b"")
            return self._answer(200, value.encode())
        if request.method == "PUT":
            value = (await request.read()).decode()
            self._write(key, value)
            return self._answer(200, b"")
        if request.method == "DELETE":
            self._write(key, None)
            return self._answer(204, b"")
        return self._answer(405, b"")

    async def _internal(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        value = self.store.get(key)
        if value is None:
            return self._answer(404, b"")
        return web.json_response(
            {"key": key, "exists": True, "deleted": False, "value": value, "origin": self.region},
            headers={"X-Chaosaa-Region": self.region},
        )

    def _write(self, key: str, value: str | None) -> None:
        self._apply(key, value)
        loop = asyncio.get_running_loop()
        for peer, delay in self._peers:
            timer = loop.call_later(delay, peer._apply, key, value)
            self._timers.add(timer)

    def _apply(self, key: str, value: str | None) -> None:
        if value is None:
            self.store.pop(key, None)
        else:
            self.store[key] = value


class PlainService(SwitchableService):
    """The same switchable service, as an application that knows nothing of chaosaa:
    ``GET /health`` (any path, any method) answers ``{"status": "ok"}``; no ``X-Chaosaa``
    header either way, only ``region_header`` (e.g. ``X-Served-By``) when one is given.
    ``HEAD`` answers the headers alone; ``/chunked`` answers with chunked encoding."""

    def __init__(self, region: str = "us", *, region_header: str | None = None, **kw: object):
        super().__init__(region, **kw)  # type: ignore[arg-type]
        self.region_header = region_header

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._plain)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    def _answer(self, status: int, body: bytes) -> web.Response:
        headers = {self.region_header: self.region} if self.region_header else {}
        return web.Response(status=status, body=body, headers=headers)

    async def _plain(self, request: web.Request) -> web.StreamResponse:
        gated = await self._gate(request)
        if gated is not None:
            return gated
        tail = request.match_info["tail"]
        if tail == "chunked":
            response = web.StreamResponse(headers=self._answer(200, b"").headers)
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (b'{"status":', b' "ok"}'):
                await response.write(part)
            await response.write_eof()
            return response
        return self._answer(200, b'{"status": "ok"}')
