"""Link proxies: userspace TCP proxies on every path that crosses a region boundary.

One process hosts every link of the lab (``router>eu``, ``us>eu``, ...). Each link forwards
one TCP port to one upstream and applies *conditions* set through an admin HTTP API.
Conditions are per link and per stream direction (``up`` = initiator to acceptor, e.g. the
request of a replication push; ``down`` = the reverse), and each has a TTL after which it
disappears by itself, so a fault outlives its injector by at most one TTL.

Condition types and what they do to TCP streams (netem is unavailable, so these are the
userspace equivalents):

- ``blackhole`` ``mode=drop``: existing connections are reset (RST) at once and new ones are
  accepted and reset immediately, like a firewall ``reject``.
- ``blackhole`` ``mode=hang``: nothing is forwarded any more; new connections are accepted
  and held silently, in-flight data is held. Lifting it lets held data through, as TCP
  retransmission would after a real blackhole heals.
- ``latency``: each chunk is delivered ``delay +/- jitter`` after it was read (order kept).
- ``bandwidth``: a token bucket shared by all connections of the link direction.
- ``loss``: a TCP stream cannot lose bytes, so loss is modelled by its effect on TCP: each
  chunk is, with probability ``percent``, held for one retransmission timeout (200 ms,
  doubling on consecutive losses) and each new connection for the initial SYN timeout
  (1 s). ``mode=reset`` instead resets that percentage of new connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from chaosaa.lab import _runtime
from chaosaa.lab.proxy.conditions import (
    CLEAR,
    CONDITION_TYPES,
    DIRECTIONS,
    Condition,
    ConditionError,
    Conditions,
    Direction,
    StreamState,
    parse_condition,
)
from chaosaa.lab.proxy.metrics import ProxyMetrics
from chaosaa.lab.proxy.shaping import SYN_RTO, Retransmission, TokenBucket, due_time, lost

log = logging.getLogger(__name__)

#: read buffer per socket: large reads mean few callbacks per megabyte
_CHUNK = 256 * 1024
#: first read buffer of a socket; it grows (x4) while reads fill it
_FIRST_CHUNK = 16 * 1024
#: queued bytes per stream direction beyond which the source is no longer read
_QUEUE_BYTES = 2 * 1024 * 1024
#: write-buffer high-water mark per socket (asyncio's default, 64 KiB, pauses too early)
_WRITE_HIGH = 512 * 1024
_CONNECT_TIMEOUT = 2.0


class _Stream:
    """One direction of a proxied connection: bytes read on one socket, written on the other.

    Fast path: while no condition applies to the link direction and nothing is queued, a
    chunk is written to the destination in the callback that read it (no task, no copy).
    Otherwise chunks are stamped with their due time and queued, and a pump task delivers
    them in order. Every write, on either path, directly follows (with no suspension in
    between) a read of the link's current state, so a condition is enforced on every byte
    forwarded after it was installed; data already handed to the kernel is on the wire.
    """

    def __init__(self, conn: _Connection, direction: Direction) -> None:
        self.conn = conn
        self.link = conn.link
        self.direction = direction
        self.sent = conn.link.sent
        self.queue: deque[tuple[float, bytes | None]] = deque()
        self.queued = 0
        self.pump: asyncio.Task[None] | None = None
        self.dst_paused = False
        self.read_paused = False
        self.done = False
        self._resumed: asyncio.Future[None] | None = None
        self._last_due = 0.0
        self._retransmission = Retransmission()

    @property
    def src(self) -> asyncio.Transport | None:
        return self.conn.client if self.direction == "up" else self.conn.upstream

    @property
    def dst(self) -> asyncio.Transport | None:
        return self.conn.upstream if self.direction == "up" else self.conn.client

    def feed(self, data: memoryview) -> bool:
        """Forward or queue a chunk; True if the destination kept a reference to ``data``."""
        dst = self.dst
        if (
            dst is not None
            and self.pump is None
            and not self.queue
            and self.link.state(self.direction) is CLEAR
        ):
            dst.write(data)
            self.sent[self.direction] += len(data)
            return dst.get_write_buffer_size() > 0
        self._enqueue(bytes(data))
        return False

    def feed_eof(self) -> None:
        if (
            self.dst is not None
            and self.pump is None
            and not self.queue
            and self.link.state(self.direction) is CLEAR
        ):
            self._write_eof()
        else:
            self._enqueue(None)

    def connected(self) -> None:
        """The destination is connected: deliver what arrived meanwhile (without a pump
        task when no condition applies, which is what keeps connection setup cheap)."""
        dst = self.dst
        assert dst is not None
        while self.queue and self.link.state(self.direction) is CLEAR:
            due, data = self.queue[0]
            if due > time.monotonic():
                break
            self.queue.popleft()
            if data is None:
                self._write_eof()
                break
            self.queued -= len(data)
            dst.write(data)
            self.sent[self.direction] += len(data)
        self._flow()
        self._kick()

    def dst_pause(self, paused: bool) -> None:
        self.dst_paused = paused
        if not paused and self._resumed is not None and not self._resumed.done():
            self._resumed.set_result(None)
        self._flow()

    def _enqueue(self, data: bytes | None) -> None:
        now = time.monotonic()
        due = due_time(self.link.state(self.direction), now) if data else now
        due = max(due, self._last_due)  # never reorder the byte stream
        self._last_due = due
        self.queue.append((due, data))
        self.queued += len(data or b"")
        self._flow()
        self._kick()

    def _kick(self) -> None:
        if self.pump is None and self.queue and self.dst is not None and not self.conn.closed:
            self.pump = asyncio.get_running_loop().create_task(self._run())

    def _flow(self) -> None:
        """Stop reading the source while the destination or the queue is full."""
        src = self.src
        want = self.dst_paused or self.queued > _QUEUE_BYTES
        if src is None or want == self.read_paused or src.is_closing():
            return
        self.read_paused = want
        if want:
            src.pause_reading()
        else:
            src.resume_reading()

    async def _run(self) -> None:
        """Deliver queued chunks when due, in order, under the link's current conditions."""
        try:
            while self.queue and not self.conn.closed:
                due, data = self.queue.popleft()
                self.queued -= len(data or b"")
                self._flow()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not await self._forward(data):
                    return
        except (ConnectionError, OSError):
            self.conn.abort()
        finally:
            self.pump = None

    async def _gate(self) -> StreamState | None:
        """The current state once no blackhole holds this direction; None if cut."""
        while not self.conn.closed:
            st = self.link.state(self.direction)
            if st.blackhole is None:
                return st
            if st.blackhole == "drop":
                self.conn.abort()
                return None
            await self.link.wait_change(1.0)
        return None

    async def _forward(self, data: bytes | None) -> bool:
        st = await self._gate()
        if st is None:
            return False
        if data is None:
            self._write_eof()
            return True
        if stall := self._retransmission.stall(st.loss):
            await asyncio.sleep(stall)
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            st = await self._gate()  # conditions may have changed while we waited
            if st is None:
                return False
            n = len(view) - sent
            if st.rate > 0:
                bucket = self.link.bucket(st.rate, self.direction)
                n = min(n, bucket.piece())
                if wait := bucket.take_now(n):
                    await asyncio.sleep(wait)
                    continue
            dst = self.dst
            assert dst is not None
            dst.write(view[sent : sent + n])
            sent += n
            self.sent[self.direction] += n
            await self._drain()
        return True

    async def _drain(self) -> None:
        while self.dst_paused and not self.conn.closed:
            self._resumed = asyncio.get_running_loop().create_future()
            await self._resumed

    def _write_eof(self) -> None:
        dst = self.dst
        if dst is not None and not dst.is_closing() and dst.can_write_eof():
            dst.write_eof()
        self.done = True
        self.conn.stream_done()


class _Side(asyncio.BufferedProtocol):
    """One socket of a proxied connection: what it reads feeds ``reads``; its write
    buffer's back-pressure pauses ``writes``' source."""

    def __init__(self, conn: _Connection, *, client: bool) -> None:
        self.conn = conn
        self.client = client
        self.reads = conn.up if client else conn.down
        self.writes = conn.down if client else conn.up
        # Start small (most connections carry a request and a response) and grow while
        # reads fill the buffer: a zeroed 256 KiB per socket would cost more than the
        # round trip on short connections.
        self._view = memoryview(bytearray(_FIRST_CHUNK))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        if self.client:
            self.conn.client_made(transport)
        else:
            self.conn.upstream_made(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        size = len(self._view)
        if self.reads.feed(self._view[:nbytes]) or (nbytes == size and size < _CHUNK):
            # Grow, or the transport still references the buffer (Python >= 3.12 keeps
            # memoryviews of unsent data): read into a new one.
            self._view = memoryview(bytearray(min(_CHUNK, size * 4 if nbytes == size else size)))

    def eof_received(self) -> bool:
        self.reads.feed_eof()
        return True  # half-close: keep the other direction open

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.lost(self.client, exc)

    def pause_writing(self) -> None:
        self.writes.dst_pause(True)

    def resume_writing(self) -> None:
        self.writes.dst_pause(False)


class _Connection:
    def __init__(self, link: Link) -> None:
        self.link = link
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.up = _Stream(self, "up")
        self.down = _Stream(self, "down")
        self.task: asyncio.Task[None] | None = None
        self.closed = False  # nothing more is forwarded (reset, or closing after EOFs)
        self._reset = False
        self._lost: set[bool] = set()  # sides (client=True) whose socket is gone
        self._ended = False

    def client_made(self, transport: asyncio.Transport) -> None:
        self.client = transport
        self.link.opened(self)
        self.task = asyncio.get_running_loop().create_task(self.link.open_upstream(self))

    def upstream_made(self, transport: asyncio.Transport) -> None:
        if self.closed:  # cut while we were connecting
            _runtime.reset(transport)
            return
        self.upstream = transport
        self.up.connected()
        self.down.connected()

    def stream_done(self) -> None:
        """Both directions delivered their EOF: close both sockets (after pending data)."""
        if self.up.done and self.down.done and not self.closed:
            self.closed = True
            for t in (self.client, self.upstream):
                if t is not None:
                    t.close()

    def abort(self) -> None:
        """Reset both sides now (RST, not FIN) and drop whatever is queued."""
        if self._reset:
            return
        self._reset = self.closed = True
        for t in (self.client, self.upstream):
            if t is not None:
                _runtime.reset(t)
        self._cancel_tasks()

    def lost(self, client: bool, exc: Exception | None) -> None:
        self._lost.add(client)
        if exc is not None or not self.closed:
            # A reset, a failed write, or a close we did not ask for: cut the other side
            # too, without flushing queued data to it.
            self.abort()
        if True in self._lost and (self.upstream is None or False in self._lost):
            self._end()

    def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        for task in (self.task, self.up.pump, self.down.pump):
            if task is not None and task is not current:
                task.cancel()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._cancel_tasks()
            self.link.ended(self)


class Link:
    """One directed TCP path, e.g. ``us>eu``: listens locally, forwards to ``upstream``."""

    def __init__(
        self, proxy: LinkProxy, name: str, sock: socket.socket, upstream: tuple[str, int]
    ) -> None:
        self.proxy = proxy
        self.name = name
        self.sock = sock
        self.upstream = upstream
        self.conns: set[_Connection] = set()
        self.server: asyncio.Server | None = None
        #: bytes forwarded per direction: plain ints on the hot path, read at scrape time
        self.sent: dict[Direction, int] = {"up": 0, "down": 0}
        self._active = proxy.metrics.active.labels(name)
        self._accepted = proxy.metrics.connections.labels(name)
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
            lambda: _Side(_Connection(self), client=True), sock=self.sock
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
            and cached[0] == self.proxy.table.generation
            and time.monotonic() < cached[1]
        ):
            return cached[2]
        generation = self.proxy.table.generation
        st, until = self.proxy.table.state(self.name, direction)
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

    def opened(self, conn: _Connection) -> None:
        self.conns.add(conn)
        self._accepted.inc()
        self._active.inc()

    def ended(self, conn: _Connection) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            self._active.dec()

    async def open_upstream(self, conn: _Connection) -> None:
        """Admit a new connection under the link's conditions, then connect upstream."""
        if not await self._admit(conn):
            return
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                await loop.create_connection(lambda: _Side(conn, client=False), *self.upstream)
        except (OSError, TimeoutError) as exc:
            if not conn.closed:
                log.info("link %s: upstream connect failed: %s", self.name, exc)
                self.proxy.metrics.dropped.labels(self.name, "upstream").inc()
                conn.abort()

    async def _admit(self, conn: _Connection) -> bool:
        """Hold or refuse a new connection according to the link's conditions."""
        while not conn.closed:
            states = [self.state(d) for d in DIRECTIONS]
            if any(s.blackhole == "drop" for s in states):
                self.proxy.metrics.dropped.labels(self.name, "blackhole").inc()
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
                    self.proxy.metrics.dropped.labels(self.name, "loss").inc()
                    conn.abort()
                    return False
                await asyncio.sleep(SYN_RTO)
                continue
            return True
        return False


class LinkProxy:
    """All links of a lab plus their conditions; usable in-process (tests) or as a process."""

    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self.metrics = ProxyMetrics(self.links)
        self.table = Conditions()
        self._reaper: asyncio.Task[None] | None = None

    async def add_link(self, name: str, sock: socket.socket, upstream: tuple[str, int]) -> Link:
        link = Link(self, name, sock, upstream)
        await link.start()
        self.links[name] = link
        self.metrics.active.labels(name).set(0)
        return link

    async def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap())

    async def close(self) -> None:
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for link in self.links.values():
            link.reset_connections()
            if link.server:
                link.server.close()
                await link.server.wait_closed()

    # -- conditions ------------------------------------------------------------------
    @property
    def conditions(self) -> dict[str, Condition]:
        """Every condition by id, including expired ones the reaper has not removed yet."""
        return self.table.by_id

    def enforcement(self, cond: Condition) -> list[dict[str, Any]]:
        """Per target link direction: is the condition part of the state every stream
        consults before it forwards a byte, and (drop) has every open connection been cut."""
        out = []
        for name, dirs in sorted(cond.targets.items()):
            link = self.links[name]
            uncut = link.uncut() if cond.resets else 0
            for d in sorted(dirs):
                out.append(
                    {
                        "link": name,
                        "dir": d,
                        "effective": link.state(d).carries(cond),
                        "connections": len(link.conns),
                        "uncut": uncut,
                    }
                )
        return out

    def condition_json(self, cond: Condition) -> dict[str, Any]:
        enforced = self.enforcement(cond)
        return {
            **cond.to_json(time.monotonic()),
            "enforced": enforced,
            "inEffect": all(e["effective"] and e["uncut"] == 0 for e in enforced),
        }

    def add_condition(self, body: dict[str, Any]) -> Condition:
        cond = parse_condition(body, self.links)
        self.table.add(cond)
        self._changed(cond.targets)
        if cond.resets:
            # Existing connections must be cut too, not only new connects.
            for name in cond.targets:
                self.links[name].reset_connections()
        log.info("condition %s added: %s on %s", cond.id, cond.type, sorted(cond.targets))
        return cond

    def renew(self, cid: str, ttl: float) -> Condition | None:
        cond = self.table.renew(cid, ttl)
        if cond is not None:
            self._changed(cond.targets)
        return cond

    def remove(self, cid: str) -> Condition | None:
        cond = self.table.remove(cid)
        if cond is not None:
            self._changed(cond.targets)
            log.info("condition %s removed", cid)
        return cond

    def remove_all(self) -> int:
        ids = list(self.conditions)
        for cid in ids:
            self.remove(cid)
        return len(ids)

    def _changed(self, targets: Iterable[str]) -> None:
        for name in targets:
            self.links[name].notify()
        self._update_gauges()

    def _update_gauges(self) -> None:
        for name in self.links:
            for ctype in CONDITION_TYPES:
                self.metrics.conditions.labels(name, ctype).set(self.table.count(name, ctype))

    async def _reap(self) -> None:
        """Drop expired conditions: the dead-man switch when nobody renews them."""
        while True:
            await asyncio.sleep(0.05)
            for cid in self.table.expired():
                log.info("condition %s expired (TTL)", cid)
                self.remove(cid)

    # -- admin API -------------------------------------------------------------------
    def admin_app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/healthz", self._h_health)
        r.add_get("/links", self._h_links)
        r.add_post("/links/{name}/reset", self._h_reset)
        r.add_get("/conditions", self._h_list)
        r.add_post("/conditions", self._h_add)
        r.add_delete("/conditions", self._h_delete_all)
        r.add_get("/conditions/{id}", self._h_get)
        r.add_post("/conditions/{id}/renew", self._h_renew)
        r.add_delete("/conditions/{id}", self._h_delete)
        r.add_get("/metrics", _runtime.metrics_handler(self.metrics.registry))
        return app

    async def _h_health(self, _r: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "links": len(self.links)})

    async def _h_links(self, _r: web.Request) -> web.Response:
        out = []
        for name, link in self.links.items():
            out.append(
                {
                    "name": name,
                    "listen": f"127.0.0.1:{link.listen_port}",
                    "upstream": f"{link.upstream[0]}:{link.upstream[1]}",
                    "activeConnections": len(link.conns),
                    "state": {d: link.state(d).to_json() for d in DIRECTIONS},
                }
            )
        return web.json_response({"links": out})

    async def _h_reset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        link = self.links.get(name)
        if link is None:
            raise web.HTTPNotFound(text=f"unknown link {name!r}")
        return web.json_response({"link": name, "closed": link.reset_connections()})

    async def _h_list(self, _r: web.Request) -> web.Response:
        live = [self.condition_json(c) for c in self.table.all_live()]
        return web.json_response({"conditions": live})

    async def _h_get(self, request: web.Request) -> web.Response:
        cond = self.table.live(request.match_info["id"])
        if cond is None:
            raise web.HTTPNotFound(text="no such condition")
        return web.json_response(self.condition_json(cond))

    async def _h_add(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            cond = self.add_condition(body)
        except ConditionError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.condition_json(cond), status=201)

    async def _h_renew(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            cond = self.renew(request.match_info["id"], body.get("ttl"))  # type: ignore[arg-type]
        except ConditionError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if cond is None:
            return web.json_response({"error": "no such condition (expired?)"}, status=404)
        return web.json_response(self.condition_json(cond))

    async def _h_delete(self, request: web.Request) -> web.Response:
        cond = self.remove(request.match_info["id"])
        if cond is None:
            return web.json_response({"error": "no such condition"}, status=404)
        return web.json_response({"id": cond.id, "removed": True})

    async def _h_delete_all(self, _r: web.Request) -> web.Response:
        return web.json_response({"removed": self.remove_all()})


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


# -- process entry point ------------------------------------------------------------------
async def _amain(config: dict[str, Any]) -> None:
    proxy = LinkProxy()
    await proxy.start()
    for spec in config["links"]:
        sock = _runtime.inherited_socket(int(spec["fd"]))
        await proxy.add_link(spec["name"], sock, (spec["upstreamHost"], int(spec["upstreamPort"])))
    async with _runtime.serving(proxy.admin_app(), int(config["adminFd"])):
        log.info("link proxy up with %d links", len(proxy.links))
        await _runtime.wait_for_shutdown_signal()
        await proxy.close()


def main() -> None:
    config = _runtime.child_config("chaosaa lab link proxies")
    _runtime.setup_logging("proxy")
    asyncio.run(_amain(config))
