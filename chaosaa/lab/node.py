"""Demo node: one region of the active-active demo service.

KV API on ``/kv/{key}``, SQLite storage (ack after commit), asynchronous push replication
of local writes to every peer *through the link proxies*, last-writer-wins with hybrid
logical clocks.

Replication lag (``chaosaa_demo_replication_lag_seconds{source,target}``, exported by the
*target* node) is the staleness of the target's copy of the source's write stream:
``now - T``, where T is the source wall-clock time up to which the target holds every
write of the source. A push that drains the source's log carries the source's clock
(``asOf``), so on an idle healthy link T advances with the heartbeat (every 250 ms) and the
lag stays below ~0.3 s; while the link is cut or paused T freezes and the lag grows 1 s
per second; while throttled T is the origin time of the last write applied. Before the
first contact T is the node's start time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from chaosaa.lab import _runtime
from chaosaa.lab.capacity import Capacity, CapacityCollector, Limiter, Overloaded
from chaosaa.lab.storage import KVStorage, SqliteStorage, StorageError, open_storage
from chaosaa.lab.store import Record, Store

log = logging.getLogger(__name__)

T = TypeVar("T")

REGION_HEADER = "X-Chaosaa-Region"
HEARTBEAT_SECONDS = 0.25
PUSH_TIMEOUT = aiohttp.ClientTimeout(total=5.0, connect=1.0)
MAX_BATCH_RECORDS = 200
MAX_BATCH_BYTES = 16 * 1024
MIN_BATCH_BYTES = 512
MAX_BACKOFF = 1.0


@dataclass
class PeerState:
    """Outbound replication to one peer (kept on the source node)."""

    name: str
    url: str
    acked_seq: int = 0
    last_error: str | None = None
    last_success: float | None = None
    pushes: int = 0


@dataclass
class SourceState:
    """Inbound replication from one peer (kept on the target node)."""

    name: str
    caught_up_to: float
    applied: int = 0
    last_push: float | None = None


@dataclass
class NodeState:
    region: str
    peers: dict[str, PeerState]
    sources: dict[str, SourceState] = field(default_factory=dict)
    head_seq: int = 0


class _LagCollector(Collector):
    """Computes lag at scrape time, so it keeps rising while nothing arrives."""

    def __init__(self, state: NodeState) -> None:
        self._state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        lag = GaugeMetricFamily(
            "chaosaa_demo_replication_lag_seconds",
            "Staleness of this (target) region's copy of the source region's writes",
            labels=["source", "target"],
        )
        for src in self._state.sources.values():
            lag.add_metric([src.name, self._state.region], max(0.0, now - src.caught_up_to))
        yield lag
        backlog = GaugeMetricFamily(
            "chaosaa_demo_replication_backlog",
            "Local writes of this (source) region not yet acknowledged by the target",
            labels=["source", "target"],
        )
        for peer in self._state.peers.values():
            backlog.add_metric(
                [self._state.region, peer.name], max(0, self._state.head_seq - peer.acked_seq)
            )
        yield backlog


class Node:
    def __init__(
        self,
        region: str,
        db_path: Path,
        peers: dict[str, str],
        storage: KVStorage | None = None,
    ) -> None:
        self.region = region
        self.db_path = db_path
        #: SQLite (the demo) unless the region's real database is given; a database that
        #: replicates by itself has no peers here (the node's HTTP replication is off)
        self.storage = storage or SqliteStorage(db_path, region)
        if self.storage.replicates and peers:
            raise ValueError("the database replicates: a node on it takes no peers")
        started = time.time()
        self.state = NodeState(
            region,
            {name: PeerState(name, url) for name, url in peers.items()},
            {name: SourceState(name, caught_up_to=started) for name in peers},
        )
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "chaosaa_demo_requests_total",
            "KV requests served by a demo node",
            ["region", "method", "code"],
            registry=self.registry,
        )
        self.conflicts = Counter(
            "chaosaa_demo_conflicts_total",
            "Replicated writes discarded by last-writer-wins because a concurrent write "
            "from another region is newer",
            ["region"],
            registry=self.registry,
        )
        self.applied = Counter(
            "chaosaa_demo_replication_applied_total",
            "Replicated writes received from a source region",
            ["source", "target"],
            registry=self.registry,
        )
        self.up = Gauge(
            "chaosaa_demo_up", "1 while the node serves", ["region"], registry=self.registry
        )
        self.registry.register(_LagCollector(self.state))
        #: the region's service capacity (chaosaa.lab.capacity): unlimited until set
        self.limiter = Limiter()
        self.registry.register(CapacityCollector(region, self.limiter))
        self.queue_wait = Histogram(
            "chaosaa_demo_queue_wait_seconds",
            "Time a KV request waited for a worker (capacity)",
            ["region"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.conflicts.labels(region)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        assert isinstance(self.storage, SqliteStorage), "node replication needs SQLite"
        return await self.storage.run(fn, *args)

    @property
    def store(self) -> Store:
        assert isinstance(self.storage, SqliteStorage), "only the demo node has a SQLite store"
        return self.storage.store

    async def start(self) -> None:
        await self.storage.start()
        if self.storage.replicates:
            self.up.labels(self.region).set(1)
            return
        self.state.head_seq = await self._db(self.store.head_seq)
        for peer in self.state.peers.values():
            peer.acked_seq = await self._db(self.store.cursor, peer.name)
        # No connection reuse across pushes would hide nothing, but a small pool keeps
        # per-push overhead low; limit_per_host=1 keeps one stream per link, like a
        # replication channel.
        self._session = aiohttp.ClientSession(
            timeout=PUSH_TIMEOUT, connector=aiohttp.TCPConnector(limit_per_host=1)
        )
        for peer in self.state.peers.values():
            self._tasks.append(asyncio.create_task(self._replicate(peer)))
        self.up.labels(self.region).set(1)

    async def close(self) -> None:
        await _runtime.cancel_and_wait(self._tasks)
        if self._session:
            await self._session.close()
        await self.storage.close()

    # -- replication -----------------------------------------------------------------
    async def _replicate(self, peer: PeerState) -> None:
        """Push this region's log to one peer, forever; heartbeat when idle."""
        backoff = 0.05
        # Adaptive batch size: on a throttled link a big push would time out forever;
        # halving on failure guarantees progress at any bandwidth (one record at least).
        max_bytes = MAX_BATCH_BYTES
        wake = self._wake
        while True:
            try:
                batch = await self._db(
                    self.store.log_batch, peer.acked_seq, MAX_BATCH_RECORDS, max_bytes
                )
                as_of = time.time()
                last_seq = batch.records[-1][0] if batch.records else peer.acked_seq
                complete = last_seq >= batch.head_seq
                body = {
                    "source": self.region,
                    "records": [rec.to_wire() for _, rec in batch.records],
                    "asOf": as_of,
                    "complete": complete,
                }
                assert self._session is not None
                async with self._session.post(f"{peer.url}/internal/replicate", json=body) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}")
                    await resp.read()
                if last_seq != peer.acked_seq:
                    await self._db(self.store.set_cursor, peer.name, last_seq)
                    peer.acked_seq = last_seq
                peer.last_error = None
                peer.last_success = time.time()
                peer.pushes += 1
                backoff = 0.05
                max_bytes = min(MAX_BATCH_BYTES, max_bytes * 2)
                if complete:
                    # Sleep until a local write or the heartbeat, whichever comes first.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), HEARTBEAT_SECONDS)
                    wake = self._wake
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: keep the backlog, retry with backoff
                peer.last_error = f"{type(exc).__name__}: {exc}"
                log.debug("push to %s failed: %s", peer.name, peer.last_error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                max_bytes = max(MIN_BATCH_BYTES, max_bytes // 2)

    def _notify_writers(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    # -- HTTP --------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._region_header])
        r = app.router
        r.add_get("/healthz", self._h_health)
        r.add_get("/metrics", _runtime.metrics_handler(self.registry))
        r.add_get("/kv/{key:.+}", self._h_get)
        r.add_put("/kv/{key:.+}", self._h_put)
        r.add_post("/kv/{key:.+}", self._h_put)
        r.add_delete("/kv/{key:.+}", self._h_delete)
        r.add_get("/internal/kv", self._h_scan)
        r.add_get("/internal/kv/{key:.+}", self._h_meta)
        r.add_get("/internal/replication", self._h_replication)
        r.add_post("/internal/replicate", self._h_replicate)
        r.add_get("/internal/capacity", self._h_capacity_get)
        r.add_put("/internal/capacity", self._h_capacity_put)
        return app

    @web.middleware
    async def _region_header(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        counted = request.path.startswith("/kv/")
        try:
            resp: web.StreamResponse = await (
                self._within_capacity(handler, request) if counted else handler(request)
            )
        except Overloaded as exc:
            self._count(request.method, 503)
            return web.Response(
                status=503,
                text=f"region {self.region} is at capacity: {exc}\n",
                headers={REGION_HEADER: self.region},
            )
        except StorageError as exc:
            # The region's database cannot serve (cut off, no quorum): the node is up, the
            # request fails like any unavailable backend.
            log.debug("storage unavailable: %s", exc)
            if counted:
                self._count(request.method, 503)
            return web.Response(
                status=503,
                text=f"database unavailable: {exc}\n",
                headers={REGION_HEADER: self.region},
            )
        except web.HTTPException as exc:
            exc.headers[REGION_HEADER] = self.region
            if counted:
                self._count(request.method, exc.status)
            raise
        except Exception:
            if counted:
                self._count(request.method, 500)
            raise
        resp.headers[REGION_HEADER] = self.region
        if counted:
            self._count(request.method, resp.status)
        return resp

    async def _within_capacity(
        self, handler: Callable[[web.Request], Any], request: web.Request
    ) -> web.StreamResponse:
        """A KV request holds one of the region's workers for its service time and its
        store operation; health checks, metrics and replication do not."""
        async with self.limiter.slot() as waited:
            self.queue_wait.labels(self.region).observe(waited)
            resp: web.StreamResponse = await handler(request)
            return resp

    async def _h_capacity_get(self, _r: web.Request) -> web.Response:
        return web.json_response(self._capacity_state())

    async def _h_capacity_put(self, request: web.Request) -> web.Response:
        body = await _runtime.json_object(request, lambda m: web.HTTPBadRequest(text=m))
        try:
            capacity = Capacity.from_json(body)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"capacity: {exc}\n") from exc
        self.limiter.configure(capacity)
        log.info("capacity of %s: %s", self.region, capacity.describe())
        return web.json_response(self._capacity_state())

    def _capacity_state(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "capacity": self.limiter.capacity.to_json(),
            "describe": self.limiter.capacity.describe(),
            "inService": self.limiter.in_service,
            "queued": self.limiter.queued,
            "rejected": self.limiter.rejected,
        }

    def _count(self, method: str, code: int) -> None:
        self.requests.labels(self.region, method, str(code)).inc()

    async def _h_health(self, _r: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "region": self.region})

    async def _h_get(self, request: web.Request) -> web.Response:
        rec = await self.storage.read(request.match_info["key"])
        if rec is None or rec.deleted:
            return web.Response(status=404, text="not found\n")
        return web.Response(body=rec.value or b"", headers=_version_headers(rec))

    async def _h_put(self, request: web.Request) -> web.Response:
        value = await request.read()
        rec = await self._write(request.match_info["key"], value)
        return web.json_response(_ack(rec), headers=_version_headers(rec))

    async def _h_delete(self, request: web.Request) -> web.Response:
        rec = await self._write(request.match_info["key"], None)
        return web.json_response(_ack(rec), headers=_version_headers(rec))

    async def _write(self, key: str, value: bytes | None) -> Record:
        # storage.write returns only after COMMIT: the ack follows it.
        rec = await self.storage.write(key, value)
        self.state.head_seq += 1
        self._notify_writers()
        return rec

    async def _h_meta(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        rec = await self.storage.read(key)
        if rec is None:
            return web.json_response(
                {"key": key, "exists": False, "deleted": False, "region": self.region},
                status=404,
            )
        return web.json_response({**rec.to_public(), "region": self.region})

    async def _h_scan(self, request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        try:
            limit = min(int(request.query.get("limit", "1000")), 10000)
        except ValueError as exc:
            raise web.HTTPBadRequest(text="limit must be an integer") from exc
        recs = await self.storage.scan(prefix, limit)
        return web.json_response({"region": self.region, "items": [r.to_public() for r in recs]})

    async def _h_replication(self, _r: web.Request) -> web.Response:
        now = time.time()
        return web.json_response(
            {
                "region": self.region,
                "headSeq": self.state.head_seq,
                "outbound": {
                    p.name: {
                        "ackedSeq": p.acked_seq,
                        "backlog": max(0, self.state.head_seq - p.acked_seq),
                        "lastError": p.last_error,
                        "lastSuccess": p.last_success,
                    }
                    for p in self.state.peers.values()
                },
                "inbound": {
                    s.name: {
                        "lagSeconds": max(0.0, now - s.caught_up_to),
                        "caughtUpTo": s.caught_up_to,
                        "applied": s.applied,
                        "lastPush": s.last_push,
                    }
                    for s in self.state.sources.values()
                },
            }
        )

    async def _h_replicate(self, request: web.Request) -> web.Response:
        body = await request.json()
        source = str(body["source"])
        records = [Record.from_wire(r) for r in body["records"]]
        result = await self._db(self.store.apply_remote, records)
        src = self.state.sources.get(source)
        if src is None:
            src = self.state.sources[source] = SourceState(source, caught_up_to=0.0)
        if body.get("complete"):
            src.caught_up_to = max(src.caught_up_to, float(body["asOf"]))
        elif records:
            src.caught_up_to = max(src.caught_up_to, records[-1].origin_ts)
        src.applied += len(records)
        src.last_push = time.time()
        if records:
            self.applied.labels(source, self.region).inc(len(records))
        if result.conflicts:
            self.conflicts.labels(self.region).inc(result.conflicts)
        return web.json_response({"applied": result.applied, "conflicts": result.conflicts})


def _version_headers(rec: Record) -> dict[str, str]:
    return {"X-Chaosaa-HLC": rec.version.hlc_text(), "X-Chaosaa-Origin": rec.version.origin}


def _ack(rec: Record) -> dict[str, object]:
    return {
        "key": rec.key,
        "deleted": rec.deleted,
        "hlc": rec.version.hlc_text(),
        "origin": rec.version.origin,
        "originTs": rec.origin_ts,
    }


async def _amain(config: dict[str, Any]) -> None:
    storage = open_storage(config["region"], config)
    node = Node(config["region"], Path(config.get("db", "")), dict(config["peers"]), storage)
    await node.start()
    async with _runtime.serving(node.app(), int(config["fd"])):
        log.info("node %s up", node.region)
        await _runtime.wait_for_shutdown_signal()
    await node.close()


def main() -> None:
    config = _runtime.child_config("chaosaa lab demo node")
    _runtime.setup_logging(f"node-{config['region']}")
    asyncio.run(_amain(config))


if __name__ == "__main__":
    main()
