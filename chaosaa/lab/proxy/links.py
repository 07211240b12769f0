"""A link: one directed TCP path between regions (``us>eu``) and its connections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

from chaosaa.lab.proxy.conditions import DIRECTIONS, Conditions, Direction, StreamState
from chaosaa.lab.proxy.metrics import ProxyMetrics
from chaosaa.lab.proxy.shaping import SYN_RTO, TokenBucket, lost
from chaosaa.lab.proxy.streams import Connection, Side

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT = 2.0


class Link:
    """One directed TCP path, e.g. ``us>eu``: listens locally, forwards to ``upstream``."""

    def __init__(
        self,
        conditions: Conditions,
        metrics: ProxyMetrics,
        name: str,
        sock: socket.socket,
        upstream: tuple[str, int],
    ) -> None:
        self.conditions = conditions
        self.metrics = metrics
        self.name = name
        self.sock = sock
        self.upstream = upstream
        self.conns: set[Connection] = set()
        self.server: asyncio.Server | None = None
        #: bytes forwarded per direction: plain ints on the hot path, read at scrape time
        self.sent: dict[Direction, int] = {"up": 0, "down": 0}
        self._active = metrics.active.labels(name)
        self._accepted = metrics.connections.labels(name)
        self._changed = asyncio.Event()
        self._buckets: dict[Direction, TokenBucket] = {}
        #: direction -> (conditions generation, valid until (monotonic), state)
        self._cache: dict[Direction, tuple[int, float, StreamState]] = {}

    @property
    def listen_port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Side(Connection(self), client=True), sock=self.sock
        )

    def notify(self) -> None:
        """Wake every stream waiting on this link's conditions (added/removed/expired)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, limit: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), limit)

    def state(self, direction: Direction) -> StreamState:
        """The combined state of the live conditions on this link direction (cached until
        the conditions change or the first of them expires)."""
        cached = self._cache.get(direction)
        if (
            cached is not None
            and cached[0] == self.conditions.generation
            and time.monotonic() < cached[1]
        ):
            return cached[2]
        generation = self.conditions.generation
        st, until = self.conditions.state(self.name, direction)
        self._cache[direction] = (generation, until, st)
        return st

    def bucket(self, rate: float, direction: Direction) -> TokenBucket:
        b = self._buckets.get(direction)
        if b is None or b.rate != rate:
            b = self._buckets[direction] = TokenBucket(rate)
        return b

    def reset_connections(self) -> int:
        conns = list(self.conns)
        for c in conns:
            c.abort()
        return len(conns)

    def uncut(self) -> int:
        """Open connections that no reset has reached yet."""
        return sum(1 for c in self.conns if not c.closed)

    def opened(self, conn: Connection) -> None:
        self.conns.add(conn)
        self._accepted.inc()
        self._active.inc()

    def ended(self, conn: Connection) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            self._active.dec()

    async def open_upstream(self, conn: Connection) -> None:
        """Admit a new connection under the link's conditions, then connect upstream."""
        if not await self._admit(conn):
            return
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                await loop.create_connection(lambda: Side(conn, client=False), *self.upstream)
        except (OSError, TimeoutError) as exc:
            if not conn.closed:
                log.info("link %s: upstream connect failed: %s", self.name, exc)
                self.metrics.dropped.labels(self.name, "upstream").inc()
                conn.abort()

    async def _admit(self, conn: Connection) -> bool:
        """Hold or refuse a new connection according to the link's conditions."""
        while not conn.closed:
            states = [self.state(d) for d in DIRECTIONS]
            if any(s.blackhole == "drop" for s in states):
                self.metrics.dropped.labels(self.name, "blackhole").inc()
                conn.abort()
                return False
            if any(s.blackhole == "hang" for s in states):
                # A real blackhole drops the SYN-ACK: the client waits. Keep waiting until
                # the condition goes (or the client gives up and resets).
                await self.wait_change(1.0)
                continue
            loss = max(s.loss for s in states)
            if lost(loss):
                if any(s.loss_mode == "reset" for s in states):
                    self.metrics.dropped.labels(self.name, "loss").inc()
                    conn.abort()
                    return False
                await asyncio.sleep(SYN_RTO)
                continue
            return True
        return False
