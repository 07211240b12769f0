"""What every database system of the lab offers: its paths between regions, its per-region
connection endpoints and exporters, and a start/stop lifecycle.

A system is built in two steps so that the lab can put a link proxy on every path that
crosses a region boundary before anything connects:

1. construct it (ports are chosen, nothing runs) and read :meth:`DatabaseSystem.paths`;
2. ``await start(routes)`` with, for each path key, the address the initiator must dial
   (the lab's proxy for that link); a path without a route is dialled directly.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from chaosaa.canary.stores import ddl as canary_ddl
from chaosaa.lab.storage import KV_DDL
from chaosaa.lab.systems._proc import HOST, DataRoot, ServerProcess, SystemError_
from chaosaa.lab.systems.netns import RegionNamespace

log = logging.getLogger(__name__)

DbKind = Literal["postgres", "mysql"]
PathPurpose = Literal["replication", "write"]
StreamDir = Literal["up", "down"]


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Flow:
    """Data of ``source`` reaching ``target`` on a path, in the stream direction ``dir``
    (``up`` = from the connection's initiator, ``down`` = back to it)."""

    source: str
    target: str
    dir: StreamDir


@dataclass(frozen=True)
class ReplicationPath:
    """A TCP path from a process of region ``initiator`` to a server of region ``acceptor``.

    ``flows`` says which region's data moves on it and in which stream direction, so that a
    ``replicationLag`` fault on the data link ``[source, target]`` can act on the right
    direction of the right path (a standby *pulls* WAL: its data flows ``down``).
    """

    initiator: str
    acceptor: str
    upstream: Address
    purpose: PathPurpose
    flows: tuple[Flow, ...]

    @property
    def link(self) -> str:
        """The lab's link name: ``initiator>acceptor``."""
        return f"{self.initiator}>{self.acceptor}"

    @property
    def key(self) -> str:
        """Unique per system: purpose and link, e.g. ``replication:eu>us``."""
        return f"{self.purpose}:{self.link}"


@dataclass(frozen=True)
class DbEndpoint:
    """How a client connects to one database server."""

    kind: DbKind
    host: str
    port: int
    user: str
    password: str
    database: str

    def to_config(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
        }

    def postgres_dsn(self) -> str:
        """libpq keyword/value connection string (primary_conninfo, pglogical DSNs)."""
        return (
            f"host={self.host} port={self.port} user={self.user} "
            f"password={self.password} dbname={self.database} connect_timeout=2"
        )


@dataclass(frozen=True)
class RegionDatabase:
    """Where a region's demo node (and its canaries) reads and writes."""

    region: str
    read: DbEndpoint
    write: DbEndpoint
    #: the database replicates by itself: the node's own HTTP replication is off
    replicated: bool = True

    def to_config(self) -> dict[str, object]:
        return {
            "region": self.region,
            "read": self.read.to_config(),
            "write": self.write.to_config(),
            "replicated": self.replicated,
        }


@dataclass(frozen=True)
class Exporter:
    region: str
    url: str
    job: str


@dataclass(frozen=True)
class LagMetric:
    """A metric of the system's exporter that tells replication lag, and what it means."""

    promql: str
    unit: Literal["seconds", "bytes", "transactions", "ratio", "boolean"]
    meaning: str


class DatabaseSystem(abc.ABC):
    """A multi-region database system of the lab (``postgres-ha``, ``postgres-aa``, ...)."""

    name: ClassVar[str]
    kind: ClassVar[DbKind]
    description: ClassVar[str]
    #: lag metrics of the real exporter (scraped with label ``region``)
    lag_metrics: ClassVar[tuple[LagMetric, ...]]
    #: "proxy": replication paths go through the lab's link proxies (``routes``);
    #: "netns": every region in its own network namespace, faults as node rules
    routing: ClassVar[Literal["proxy", "netns"]] = "proxy"
    #: PromQL for replication lag in seconds from the exporters, where they tell it (else
    #: canary lag is the only seconds figure)
    lag_query: ClassVar[str | None] = None
    #: PromQL, per region (label ``region``): 1 while the region's server accepts writes
    ready_query: ClassVar[str | None] = None
    #: TCP ports of replication between namespaced regions (replicationLag acts on them)
    replication_ports: ClassVar[tuple[int, ...]] = ()
    #: PromQL: conflicts the system resolved so far (a counter summed over regions)
    conflicts_query: ClassVar[str | None] = None

    def __init__(self, regions: Sequence[str], log_dir: Path, *, exporters: bool = True) -> None:
        if len(regions) < 1 or len(set(regions)) != len(regions):
            raise ValueError("give one or more distinct regions")
        self.regions = list(regions)
        self.log_dir = log_dir
        self.with_exporters = exporters
        self.processes: dict[str, ServerProcess] = {}
        self._process_region: dict[str, str] = {}
        self.exporters: dict[str, Exporter] = {}
        self.routes: dict[str, Address] = {}
        #: the servers' data (created at start, removed at stop)
        self.root: DataRoot | None = None
        self._started = False
        self._ready = False

    # -- what the lab needs before start -------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def unavailable(cls) -> str | None:
        """Why this system cannot run on this machine (a missing binary, not root), or None."""

    @abc.abstractmethod
    def paths(self) -> list[ReplicationPath]:
        """Every path that crosses a region boundary (valid right after construction)."""

    # -- lifecycle -----------------------------------------------------------------------
    async def start(
        self, routes: Mapping[str, Address] | None = None, time_limit: float = 120.0
    ) -> None:
        """Start every server (and exporter), wire replication, wait until it replicates.

        On failure everything started so far is stopped again before the error propagates.
        """
        known = {p.key for p in self.paths()}
        unknown = set(routes or {}) - known
        if unknown:
            raise ValueError(f"routes for unknown paths: {sorted(unknown)}; known: {sorted(known)}")
        self.routes = dict(routes or {})
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._started = True
        try:
            await self._start(time_limit)
        except BaseException:
            await self.stop()
            raise
        self._ready = True

    async def stop(self) -> None:
        """Stop every process and remove every data directory; idempotent."""
        if not self._started:
            return
        self._ready = False
        try:
            await self._stop()
        finally:
            self._started = False

    @contextlib.asynccontextmanager
    async def running(
        self, routes: Mapping[str, Address] | None = None, time_limit: float = 120.0
    ) -> AsyncIterator[DatabaseSystem]:
        await self.start(routes, time_limit)
        try:
            yield self
        finally:
            await self.stop()

    @abc.abstractmethod
    async def _start(self, time_limit: float) -> None: ...

    @abc.abstractmethod
    async def _stop(self) -> None: ...

    # -- what the lab needs after start --------------------------------------------------
    @abc.abstractmethod
    def databases(self) -> dict[str, RegionDatabase]:
        """Per region: where its node reads and writes."""

    @property
    def started(self) -> bool:
        """Every server (and exporter) runs and replicates: :meth:`start` returned."""
        return self._ready

    def namespaces(self) -> dict[str, RegionNamespace]:
        """Per region its network namespace (``routing == "netns"``), else empty."""
        return {}

    def conflicts(self) -> dict[str, int]:
        """Per region, conflicts resolved so far by discarding an incoming write, where the
        system tells only in its logs (the lab exports them as a counter)."""
        return {}

    def leftovers(self) -> dict[str, list[str]]:
        """What a crashed lab must remove (its processes died with it): the data
        directory and the network namespaces, for ``chaosaa lab down``."""
        return {"dataDirs": [str(self.root.path)] if self.root else [], "namespaces": []}

    def pids(self, region: str) -> list[int]:
        """Server processes of ``region`` (regionDown freezes these with the node)."""
        return [
            p.pid
            for name, p in self.processes.items()
            if self._process_region.get(name) == region and p.pid is not None and p.running
        ]

    def _add_process(self, region: str, proc: ServerProcess) -> ServerProcess:
        self.processes[proc.name] = proc
        self._process_region[proc.name] = region
        return proc

    def route(self, path: ReplicationPath) -> Address:
        """The address ``path``'s initiator dials: the lab's route, else the server."""
        return self.routes.get(path.key, path.upstream)

    def path(self, purpose: str, initiator: str, acceptor: str) -> ReplicationPath:
        key = f"{purpose}:{initiator}>{acceptor}"
        for p in self.paths():
            if p.key == key:
                return p
        raise KeyError(key)

    async def _stop_processes(self, sig: signal.Signals = signal.SIGTERM) -> None:
        # Exporters first (they only read), then servers in reverse start order.
        for proc in reversed(list(self.processes.values())):
            try:
                await proc.stop(sig)
            except Exception:  # keep stopping the others
                log.exception("stopping %s failed", proc.name)
        self.processes.clear()
        self._process_region.clear()

    def _check_regions_started(self) -> None:
        if not self._started:
            raise SystemError_(f"{self.name} is not started")


def default_schema(kind: DbKind) -> list[str]:
    """The tables a lab system creates before replication starts: the demo node's and
    the canaries' (so pglogical replicates both from the first write)."""
    return [KV_DDL[kind], canary_ddl(kind)]


def loopback_address(port: int) -> Address:
    return Address(HOST, port)


__all__ = [
    "Address",
    "DatabaseSystem",
    "DbEndpoint",
    "DbKind",
    "Exporter",
    "Flow",
    "LagMetric",
    "RegionDatabase",
    "ReplicationPath",
]
