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

import argparse
import asyncio
import contextlib
import json
import logging
import random
import re
import socket
import struct
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from chaosaa.lab import _runtime

log = logging.getLogger(__name__)

Direction = Literal["up", "down"]
DIRECTIONS: tuple[Direction, Direction] = ("up", "down")
CONDITION_TYPES = ("blackhole", "latency", "bandwidth", "loss")
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_CHUNK = 64 * 1024
_QUEUE_CHUNKS = 32
_RTO = 0.2
_SYN_RTO = 1.0
_CONNECT_TIMEOUT = 2.0


class ConditionError(ValueError):
    """A condition request is invalid (HTTP 400)."""


@dataclass
class Condition:
    id: str
    type: str
    #: link name -> stream directions affected
    targets: dict[str, set[Direction]]
    expires_at: float
    mode: str = ""
    delay: float = 0.0
    jitter: float = 0.0
    rate: float = 0.0
    percent: float = 0.0
    created_at: float = field(default_factory=time.time)

    def applies(self, link: str, direction: Direction) -> bool:
        return direction in self.targets.get(link, ())

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "targets": [
                {"link": link, "dirs": sorted(dirs)} for link, dirs in sorted(self.targets.items())
            ],
            "mode": self.mode,
            "delay": self.delay,
            "jitter": self.jitter,
            "rate": self.rate,
            "percent": self.percent,
            "createdAt": self.created_at,
            "expiresIn": max(0.0, self.expires_at - now),
            "expiresAt": time.time() + max(0.0, self.expires_at - now),
        }


@dataclass(frozen=True)
class StreamState:
    """The combined effect of every live condition on one link direction."""

    blackhole: str | None = None  # None, "hang" or "drop"
    delay: float = 0.0
    jitter: float = 0.0
    rate: float = 0.0  # bytes/s; 0 = unlimited
    loss: float = 0.0  # probability 0..1
    loss_mode: str = "retransmit"

    def to_json(self) -> dict[str, Any]:
        return {
            "blackhole": self.blackhole,
            "delay": self.delay,
            "jitter": self.jitter,
            "rate": self.rate,
            "loss": self.loss,
            "lossMode": self.loss_mode,
        }


class TokenBucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        # A small burst (20 ms worth, at least one MTU) keeps the measured rate honest.
        self.capacity = max(rate * 0.02, 1500.0)
        self._tokens = self.capacity
        self._last = time.monotonic()

    async def take(self, amount: int) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= amount:
                self._tokens -= amount
                return
            await asyncio.sleep((amount - self._tokens) / self.rate)

    def piece(self) -> int:
        return max(1, int(self.capacity))


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Counter(
            "chaosaa_proxy_connections_total",
            "Connections accepted by a link proxy",
            ["link"],
            registry=registry,
        )
        self.active = Gauge(
            "chaosaa_proxy_active_connections",
            "Connections currently open through a link proxy",
            ["link"],
            registry=registry,
        )
        self.bytes = Counter(
            "chaosaa_proxy_bytes_total",
            "Bytes forwarded by a link proxy",
            ["link", "direction"],
            registry=registry,
        )
        self.dropped = Counter(
            "chaosaa_proxy_dropped_connections_total",
            "Connections reset or refused by a link condition",
            ["link", "reason"],
            registry=registry,
        )
        self.conditions = Gauge(
            "chaosaa_proxy_conditions_active",
            "Live conditions on a link",
            ["link", "type"],
            registry=registry,
        )


class _Connection:
    def __init__(self, link: Link, client_writer: asyncio.StreamWriter) -> None:
        self.link = link
        self.client_writer = client_writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def abort(self) -> None:
        """Reset both sides now (RST, not FIN), like a firewall reject mid-stream."""
        if self.closed:
            return
        self.closed = True
        for w in (self.client_writer, self.upstream_writer):
            if w is not None:
                _reset(w)
        for t in self.tasks:
            t.cancel()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


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
        self._changed = asyncio.Event()
        self._buckets: dict[Direction, TokenBucket] = {}

    @property
    def listen_port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, sock=self.sock)

    def notify(self) -> None:
        """Wake every stream waiting on this link's conditions (added/removed/expired)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, limit: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), limit)

    def state(self, direction: Direction) -> StreamState:
        return self.proxy.state(self.name, direction)

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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        m = self.proxy.metrics
        m.connections.labels(self.name).inc()
        conn = _Connection(self, writer)
        self.conns.add(conn)
        m.active.labels(self.name).inc()
        try:
            if not await self._admit(conn):
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.upstream), _CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError) as exc:
                log.info("link %s: upstream connect failed: %s", self.name, exc)
                m.dropped.labels(self.name, "upstream").inc()
                _reset(writer)
                return
            conn.upstream_writer = up_writer
            if conn.closed:  # a drop arrived while we were connecting
                _reset(up_writer)
                return
            up = asyncio.create_task(self._pump(reader, up_writer, "up", conn))
            down = asyncio.create_task(self._pump(up_reader, writer, "down", conn))
            conn.tasks = [up, down]
            await asyncio.gather(up, down, return_exceptions=True)
        finally:
            self.conns.discard(conn)
            m.active.labels(self.name).dec()
            for w in (writer, conn.upstream_writer):
                if w is not None and not w.transport.is_closing():
                    w.close()

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
                # the condition goes (or the client gives up and closes).
                await self.wait_change(1.0)
                continue
            loss = max(s.loss for s in states)
            if loss > 0 and random.random() < loss:
                if any(s.loss_mode == "reset" for s in states):
                    self.proxy.metrics.dropped.labels(self.name, "loss").inc()
                    conn.abort()
                    return False
                await asyncio.sleep(_SYN_RTO)
                continue
            return True
        return False

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        direction: Direction,
        conn: _Connection,
    ) -> None:
        """Read into a bounded queue stamped with due times; deliver in order when due.

        Reading and writing are separate tasks so latency is pipelined (a stream gains
        ``delay`` once, not once per chunk), and a full queue back-pressures the sender.
        """
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUE_CHUNKS)

        async def read() -> None:
            last_due = 0.0
            while True:
                try:
                    data = await src.read(_CHUNK)
                except (ConnectionError, OSError):
                    # A reset is not a FIN: don't flush queued data to the other side
                    # (it would spend a throttled link's budget on a dead connection).
                    conn.abort()
                    return
                now = time.monotonic()
                st = self.state(direction)
                due = now
                if data and (st.delay or st.jitter):
                    due = now + max(0.0, st.delay + random.uniform(-st.jitter, st.jitter))
                due = max(due, last_due)  # never reorder the byte stream
                last_due = due
                await queue.put((due, data))
                if not data:
                    return

        reader_task = asyncio.create_task(read())
        backoff = _RTO
        try:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if dst.can_write_eof() and not dst.transport.is_closing():
                        with contextlib.suppress(OSError):
                            dst.write_eof()
                    return
                while True:
                    st = self.state(direction)
                    if st.blackhole == "drop":
                        conn.abort()
                        return
                    if st.blackhole != "hang":
                        break
                    await self.wait_change(1.0)
                if st.loss > 0 and random.random() < st.loss:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 3.0)
                else:
                    backoff = _RTO
                if st.rate > 0:
                    bucket = self.bucket(st.rate, direction)
                    piece = bucket.piece()
                    for i in range(0, len(data), piece):
                        part = data[i : i + piece]
                        await bucket.take(len(part))
                        dst.write(part)
                        await dst.drain()
                else:
                    dst.write(data)
                    await dst.drain()
                self.proxy.metrics.bytes.labels(self.name, direction).inc(len(data))
        except (ConnectionError, OSError):
            conn.abort()
        finally:
            reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await reader_task


class LinkProxy:
    """All links of a lab plus their conditions; usable in-process (tests) or as a process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = _Metrics(self.registry)
        self.links: dict[str, Link] = {}
        self.conditions: dict[str, Condition] = {}
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
    def state(self, link: str, direction: Direction) -> StreamState:
        now = time.monotonic()
        blackhole: str | None = None
        delay = jitter = rate = 0.0
        keep = 1.0
        loss_mode = "retransmit"
        for c in self.conditions.values():
            if c.expires_at <= now or not c.applies(link, direction):
                continue
            if c.type == "blackhole":
                blackhole = "drop" if c.mode == "drop" or blackhole == "drop" else "hang"
            elif c.type == "latency":
                delay += c.delay
                jitter += c.jitter
            elif c.type == "bandwidth":
                rate = c.rate if rate == 0 else min(rate, c.rate)
            elif c.type == "loss":
                keep *= 1.0 - c.percent / 100.0
                if c.mode == "reset":
                    loss_mode = "reset"
        return StreamState(blackhole, delay, jitter, rate, 1.0 - keep, loss_mode)

    def add_condition(self, body: dict[str, Any]) -> Condition:
        cond = self._parse(body)
        if cond.id in self.conditions:
            raise ConditionError(f"condition {cond.id!r} already exists; renew or delete it")
        self.conditions[cond.id] = cond
        self._changed(cond.targets)
        if cond.type == "blackhole" and cond.mode == "drop":
            # Existing connections must be cut too, not only new connects.
            for name in cond.targets:
                self.links[name].reset_connections()
        log.info("condition %s added: %s on %s", cond.id, cond.type, sorted(cond.targets))
        return cond

    def renew(self, cid: str, ttl: float) -> Condition | None:
        cond = self.conditions.get(cid)
        if cond is None or cond.expires_at <= time.monotonic():
            return None
        cond.expires_at = time.monotonic() + _ttl(ttl)
        return cond

    def remove(self, cid: str) -> Condition | None:
        cond = self.conditions.pop(cid, None)
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
        now = time.monotonic()
        for name in self.links:
            for ctype in CONDITION_TYPES:
                n = sum(
                    1
                    for c in self.conditions.values()
                    if c.type == ctype and name in c.targets and c.expires_at > now
                )
                self.metrics.conditions.labels(name, ctype).set(n)

    async def _reap(self) -> None:
        """Drop expired conditions: the dead-man switch when nobody renews them."""
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            for cid, cond in list(self.conditions.items()):
                if cond.expires_at <= now:
                    log.info("condition %s expired (TTL)", cid)
                    self.remove(cid)

    def _parse(self, body: dict[str, Any]) -> Condition:
        ctype = body.get("type")
        if ctype not in CONDITION_TYPES:
            raise ConditionError(f"type must be one of {', '.join(CONDITION_TYPES)}")
        cid = str(body.get("id") or f"c-{uuid.uuid4().hex[:12]}")
        if not _ID_RE.match(cid):
            raise ConditionError("id must match [A-Za-z0-9_.:-]{1,128}")
        raw_targets = body.get("targets")
        if not isinstance(raw_targets, list) or not raw_targets:
            raise ConditionError("targets must be a non-empty list of {link, dir}")
        targets: dict[str, set[Direction]] = {}
        for t in raw_targets:
            if not isinstance(t, dict):
                raise ConditionError("each target is an object {link, dir}")
            name = t.get("link")
            if name not in self.links:
                raise ConditionError(f"unknown link {name!r}; known: {', '.join(self.links)}")
            d = t.get("dir", "both")
            dirs: tuple[Direction, ...]
            if d == "both":
                dirs = DIRECTIONS
            elif d in DIRECTIONS:
                dirs = (d,)
            else:
                raise ConditionError("dir must be up, down or both")
            targets.setdefault(str(name), set()).update(dirs)
        ttl = _ttl(body.get("ttl"))
        cond = Condition(cid, str(ctype), targets, time.monotonic() + ttl)
        if ctype == "blackhole":
            cond.mode = str(body.get("mode") or "hang")
            if cond.mode not in ("drop", "hang"):
                raise ConditionError("blackhole mode must be drop or hang")
        elif ctype == "latency":
            cond.delay = _number(body, "delay", required=True)
            cond.jitter = _number(body, "jitter")
        elif ctype == "bandwidth":
            cond.rate = _number(body, "rate", required=True)
            if cond.rate <= 0:
                raise ConditionError("rate must be > 0 (bytes per second)")
        else:
            cond.percent = _number(body, "percent", required=True)
            if not 0 <= cond.percent <= 100:
                raise ConditionError("percent must be within 0..100")
            cond.mode = str(body.get("mode") or "retransmit")
            if cond.mode not in ("retransmit", "reset"):
                raise ConditionError("loss mode must be retransmit or reset")
        return cond

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
        r.add_get("/metrics", _runtime.metrics_handler(self.registry))
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
        now = time.monotonic()
        live = [c.to_json(now) for c in self.conditions.values() if c.expires_at > now]
        return web.json_response({"conditions": live})

    async def _h_get(self, request: web.Request) -> web.Response:
        cond = self.conditions.get(request.match_info["id"])
        if cond is None or cond.expires_at <= time.monotonic():
            raise web.HTTPNotFound(text="no such condition")
        return web.json_response(cond.to_json(time.monotonic()))

    async def _h_add(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            cond = self.add_condition(body)
        except ConditionError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(cond.to_json(time.monotonic()), status=201)

    async def _h_renew(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            cond = self.renew(request.match_info["id"], body.get("ttl"))  # type: ignore[arg-type]
        except ConditionError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if cond is None:
            return web.json_response({"error": "no such condition (expired?)"}, status=404)
        return web.json_response(cond.to_json(time.monotonic()))

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


def _number(body: dict[str, Any], key: str, *, required: bool = False) -> float:
    value = body.get(key)
    if value is None:
        if required:
            raise ConditionError(f"{key} is required")
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConditionError(f"{key} must be a number >= 0")
    return float(value)


def _ttl(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ConditionError("ttl is required: seconds, > 0 and <= 3600")
    return float(value)


# -- process entry point ------------------------------------------------------------------
async def _amain(config: dict[str, Any]) -> None:
    proxy = LinkProxy()
    await proxy.start()
    for spec in config["links"]:
        sock = _runtime.inherited_socket(int(spec["fd"]))
        await proxy.add_link(spec["name"], sock, (spec["upstreamHost"], int(spec["upstreamPort"])))
    runner = await _runtime.serve_app(
        proxy.admin_app(), _runtime.inherited_socket(int(config["adminFd"]))
    )
    log.info("link proxy up with %d links", len(proxy.links))
    await _runtime.wait_for_shutdown_signal()
    await proxy.close()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="chaosaa lab link proxies")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--parent", type=int, default=None)
    args = parser.parse_args()
    _runtime.die_with_parent(args.parent)
    _runtime.setup_logging("proxy")
    asyncio.run(_amain(json.loads(args.config.read_text())))


if __name__ == "__main__":
    main()
