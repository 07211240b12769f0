"""Real databases as the lab's system under test: ``--system postgres-ha|postgres-aa|galera``.

Each region keeps the demo node's HTTP front (the router's client link, the engine's back
door, the KV protocol the traffic speaks), but the node stores in the region's real
database and its own HTTP replication is off: the database replicates. The database system
(:mod:`chaosaa.lab.systems`) runs its servers and exporters itself; the lab wires it:

- every path of the system that crosses a region boundary gets a link proxy named after
  it (``eu>us`` for replication, ``write:eu>us`` for a region's writes to another region's
  server), with the path's flows, so faults act on the database's own traffic in the
  right stream direction (a standby pulls WAL: its data flows ``down``);
- the system starts once the link proxy runs, dialling those proxies (``routes``), and
  before the nodes, whose configs then name the databases;
- Prometheus scrapes the real exporters (job ``chaosaa-db-exporter``, label ``region``);
- regionDown freezes the region's node, server and exporter (with every descendant: a
  PostgreSQL server is many processes).

Systems whose peers learn each other's real addresses (Galera) run every region in a
network namespace instead of behind proxies: :meth:`DatabaseNodes.network` names them and
faults become node rules there (:mod:`chaosaa.lab.supervisor.netrules`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from chaosaa.lab.supervisor.demo import DemoSystem
from chaosaa.lab.supervisor.sockets import HOST
from chaosaa.lab.supervisor.system import (
    Launcher,
    Listen,
    RegionNetwork,
    ReplicationLink,
    System,
)
from chaosaa.lab.systems import SYSTEMS, Address, DatabaseSystem, ReplicationPath

#: every system ``chaosaa lab up --system`` knows, the default first
SYSTEM_NAMES = ("demo", *SYSTEMS)


def unavailable(name: str) -> str | None:
    """Why system ``name`` cannot run on this machine (a missing binary, not root)."""
    if name not in SYSTEM_NAMES:
        return f"unknown system {name!r}; choose one of {', '.join(SYSTEM_NAMES)}"
    return None if name == "demo" else SYSTEMS[name].unavailable()


def build_system(name: str, log_dir: Path) -> System:
    """The lab system called ``name``."""
    return DemoSystem() if name == "demo" else DatabaseNodes(SYSTEMS[name], log_dir)


def _link(path: ReplicationPath, kind: str) -> ReplicationLink:
    if path.upstream.host != HOST:
        raise ValueError(f"path {path.key}: upstream {path.upstream} is not on {HOST}")
    return ReplicationLink(
        path.initiator,
        path.acceptor,
        path.upstream.port,
        kind="write" if path.purpose == "write" else "replication",
        flows=tuple((f.source, f.target, f.dir) for f in path.flows),
        protocol="postgres" if kind == "postgres" else "mysql",
    )


class DatabaseNodes(DemoSystem):
    """Demo nodes storing in a :class:`DatabaseSystem` that replicates by itself."""

    def __init__(self, cls: type[DatabaseSystem], log_dir: Path) -> None:
        super().__init__()
        self.name = cls.name
        self.cls = cls
        self.log_dir = log_dir
        self._db: DatabaseSystem | None = None
        #: link name -> the system's path it carries
        self.paths: dict[str, ReplicationPath] = {}

    @property
    def db(self) -> DatabaseSystem:
        assert self._db is not None, "bind() first"
        return self._db

    def bind(self, regions: Sequence[str], listen: Listen) -> None:
        super().bind(regions, listen)
        self._db = self.cls(self.regions, self.log_dir)
        self.paths = {_link(p, self.cls.kind).name: p for p in self.db.paths()}

    def replication_links(self) -> list[ReplicationLink]:
        return [_link(p, self.cls.kind) for p in self.paths.values()]

    def node_config(self, region: str, fd: int, launcher: Launcher) -> Callable[[], dict[str, Any]]:
        def config() -> dict[str, Any]:
            # The database replicates: no peers. Known once the system runs.
            storage = self.db.databases()[region].to_config()
            return {"region": region, "fd": fd, "peers": {}, "storage": storage}

        return config

    async def start(self, links: Mapping[str, tuple[str, int]], time_limit: float) -> None:
        routes = {p.key: Address(*links[name]) for name, p in self.paths.items()}
        await self.db.start(routes, time_limit)

    async def stop(self) -> None:
        if self._db is not None:
            await self._db.stop()

    def scrape_jobs(self) -> list[dict[str, Any]]:
        exporters = [
            {"targets": [e.url.removeprefix("http://")], "labels": {"region": r}}
            for r, e in self.db.exporters.items()
        ]
        jobs = super().scrape_jobs()
        if exporters:
            jobs.append(
                {
                    "job_name": "chaosaa-db-exporter",
                    "honor_labels": True,
                    "static_configs": exporters,
                }
            )
        return jobs

    def conflicts(self) -> dict[str, int]:
        return self.db.conflicts() if self.db.started else {}

    def foreign_pids(self, region: str) -> list[int]:
        return self.db.pids(region)

    def network(self) -> dict[str, RegionNetwork]:
        return {
            r: RegionNetwork(ns.netns, ns.ip, ns.device) for r, ns in self.db.namespaces().items()
        }

    def health(self) -> dict[str, Any]:
        if not self.db.started:
            return {"healthy": False, "pid": None, "detail": "not started"}
        down = [r for r in self.regions if not self.db.pids(r)]
        detail = f"no server running in {', '.join(down)}" if down else None
        return {"healthy": not down, "pid": None, "detail": detail}

    def replication_ports(self) -> tuple[int, ...]:
        return self.cls.replication_ports

    def describe(self) -> dict[str, Any]:
        cls = self.cls
        regions: dict[str, Any] = {}
        if self.db.started:
            dbs = self.db.databases()
            for r in self.regions:
                read = dbs[r].read
                regions[r] = {
                    "database": {"host": read.host, "port": read.port, "database": read.database}
                }
                exporter = self.db.exporters.get(r)
                if exporter is not None:
                    regions[r]["exporter"] = exporter.url
        for r, net in self.network().items():
            regions.setdefault(r, {}).update(netns=net.netns, ip=net.ip, device=net.device)
        return {
            "name": cls.name,
            "description": cls.description,
            "kind": cls.kind,
            "routing": cls.routing,
            "lagQuery": cls.lag_query,
            "readyQuery": cls.ready_query,
            "conflictsQuery": cls.conflicts_query,
            "lagMetrics": [
                {"promql": m.promql, "unit": m.unit, "meaning": m.meaning} for m in cls.lag_metrics
            ],
            "regions": regions,
            "leftovers": self.db.leftovers() if self._db else {},
        }

    def secrets(self) -> dict[str, Any]:
        """Per region the connection to its own server, for the engine's canaries."""
        if not self.db.started:
            return {}
        return {
            "datastore": {
                "kind": self.cls.kind,
                "regions": {
                    r: {
                        "host": d.read.host,
                        "port": d.read.port,
                        "user": d.read.user,
                        "password": d.read.password,
                        "database": d.read.database,
                    }
                    for r, d in self.db.databases().items()
                },
            }
        }
