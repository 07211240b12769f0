"""The system under test, as one pluggable piece of the lab.

The supervisor owns the lab's frame: the global router, the link proxies, Prometheus and
the fault API. A :class:`System` fills in the regions: which processes each region runs
and on which ports, which replication paths cross region boundaries (each gets a link
proxy, so faults act on it), what Prometheus scrapes, and what regionDown freezes. The
SQLite demo (:mod:`chaosaa.lab.supervisor.demo`) is the first system.

The supervisor calls, in this order: :meth:`System.bind` (before anything starts),
:meth:`System.entry` and :meth:`System.replication_links` (to lay the links out),
:meth:`System.processes` per region (nothing started yet; a config may be written only when
its process starts); then, once the link proxy runs, :meth:`System.start` (servers the lab
does not run as its own children, e.g. databases), the region processes, and
:meth:`System.scrape_jobs` (Prometheus starts last); while the lab runs,
:meth:`System.frozen` and :meth:`System.foreign_pids` for each regionDown; at shutdown,
after every child stopped, :meth:`System.stop`.
"""

from __future__ import annotations

import json
import socket
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from chaosaa.lab.paths import StatePaths
from chaosaa.lab.supervisor.processes import Child

#: binds a listening socket on 127.0.0.1 (a kernel-picked port) that children inherit
Listen = Callable[[], socket.socket]


#: how a link's upstream speaks: what a verification probe sends through the link
Protocol = Literal["http", "postgres", "mysql"]
#: whose data moves on a link, and in which stream direction: (data source region, data
#: target region, ``up`` = from the connection's initiator | ``down`` = back to it)
Flow = tuple[str, str, str]


@dataclass(frozen=True)
class ReplicationLink:
    """A path across a region boundary: ``source`` connects to ``port`` (listening in
    ``target``) through the link proxy named :attr:`name`.

    ``kind`` ``replication`` is the system's own replication (what ``replicationLag``
    slows); ``write`` is a region's writes going to another region's server (postgres-ha:
    every region writes to the primary). ``flows`` say whose data moves in which stream
    direction (a standby *pulls* the primary's WAL: ``(primary, standby, "down")``); by
    default the source's data flows up to the target (the demo's pushes).
    """

    source: str
    target: str
    port: int
    kind: Literal["replication", "write"] = "replication"
    flows: tuple[Flow, ...] = ()
    protocol: Protocol = "http"

    @property
    def name(self) -> str:
        """``us>eu`` for replication, ``write:eu>us`` for writes: a region pair may have both."""
        link = f"{self.source}>{self.target}"
        return link if self.kind == "replication" else f"{self.kind}:{link}"

    @property
    def data_flows(self) -> tuple[Flow, ...]:
        return self.flows or ((self.source, self.target, "up"),)


@dataclass(frozen=True)
class RegionNetwork:
    """A region in a network namespace of its own (systems whose peers would bypass a
    link proxy): node rules in ``netns`` act on the region's database traffic."""

    netns: str
    ip: str
    #: the device tc shapes in the namespace
    device: str


class Launcher:
    """Builds the lab's child processes: config file written, dies with the supervisor."""

    def __init__(self, paths: StatePaths, links: Mapping[str, str], parent_pid: int) -> None:
        self.paths = paths
        #: link name (``us>eu``) -> the URL its source dials
        self.links = links
        self._parent = ["--parent", str(parent_pid)]

    def python(
        self,
        name: str,
        module: str,
        config: dict[str, Any] | Callable[[], dict[str, Any]],
        pass_fds: tuple[int, ...] = (),
        health_url: str | None = None,
    ) -> Child:
        """A lab module run as ``python -m MODULE --config run/NAME.json``.

        ``config`` may be a function: it is called, and the file written, right before the
        process starts (a node's database endpoints exist only once the database runs).
        """
        path = self.paths.run / f"{name}.json"

        def write() -> None:
            path.write_text(json.dumps(config() if callable(config) else config, indent=2))

        argv = [sys.executable, "-m", module, "--config", str(path), *self._parent]
        child = Child(name, argv, self.paths.logs / f"{name}.log", pass_fds, health_url)
        if callable(config):
            child.prepare = write
        else:
            write()
        return child

    def binary(self, name: str, argv: list[str], health_url: str | None = None) -> Child:
        """A foreign binary (Prometheus, a database), exec'ed so it dies with the lab."""
        wrapped = [sys.executable, "-m", "chaosaa.lab._exec", *self._parent, "--", *argv]
        return Child(name, wrapped, self.paths.logs / f"{name}.log", health_url=health_url)


class System(ABC):
    """What runs in each region of a lab, how it replicates, and how it is watched."""

    #: the name ``chaosaa lab up --system`` takes
    name: str

    @abstractmethod
    def bind(self, regions: Sequence[str], listen: Listen) -> None:
        """Bind, through ``listen``, every socket the regions' processes will serve on."""

    @abstractmethod
    def entry(self, region: str) -> int:
        """The port of the region's service: what the router reaches through the link
        ``router><region>``, and the region's ``nodeUrl`` (the engine's back door)."""

    @abstractmethod
    def replication_links(self) -> list[ReplicationLink]:
        """Every region-to-region path; the lab puts a link proxy on each."""

    @abstractmethod
    def processes(self, region: str, launcher: Launcher) -> list[Child]:
        """The region's processes, in start order. The first is the region's service: its
        health and pid are the region's in the lab's status."""

    @abstractmethod
    def scrape_jobs(self) -> list[dict[str, Any]]:
        """Prometheus ``scrape_configs`` entries for the system's metrics endpoints
        (static targets; keep the contract labels with ``honor_labels: true``)."""

    @abstractmethod
    def frozen(self, region: str) -> list[str]:
        """The processes (names from :meth:`processes`) regionDown SIGSTOPs in ``region``;
        they get SIGCONT when the fault is reverted or expires."""

    def foreign_pids(self, region: str) -> list[int]:
        """Processes of ``region`` the lab did not start as its children (database servers,
        their exporters): regionDown freezes them, with their descendants, too."""
        return []

    async def start(self, links: Mapping[str, tuple[str, int]], time_limit: float) -> None:  # noqa: B027
        """Start what runs outside the lab's children, once the link proxy forwards and
        before the region processes start. ``links``: link name -> its listen address."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop what :meth:`start` started and remove its data (after every child stopped)."""

    def network(self) -> dict[str, RegionNetwork]:
        """Regions in network namespaces (faults become node rules there); empty: every
        region-to-region path goes through a link proxy."""
        return {}

    def replication_ports(self) -> tuple[int, ...]:
        """The TCP ports of the replication traffic between namespaced regions."""
        return ()

    def conflicts(self) -> dict[str, int]:
        """Per region, conflicts the system resolved that only the lab can count (exported
        as ``chaosaa_lab_conflicts_total{region}``); empty: none to export."""
        return {}

    def health(self) -> dict[str, Any] | None:
        """The system's own servers as a component of the lab's status (``healthy``,
        ``detail``); None: the system has none beyond the lab's children."""
        return None

    def describe(self) -> dict[str, Any]:
        """What ``lab.json`` says about the system (secrets only in ``secrets()``)."""
        return {"name": self.name}

    def secrets(self) -> dict[str, Any]:
        """What only ``lab.json`` (mode 0600) carries: database credentials."""
        return {}


class ConflictCollector(Collector):
    """``chaosaa_lab_conflicts_total{region}`` on the supervisor's ``/metrics``."""

    def __init__(self, system: System) -> None:
        self.system = system

    def collect(self) -> Iterator[Metric]:
        counts = self.system.conflicts()
        if counts:
            family = CounterMetricFamily(
                "chaosaa_lab_conflicts",
                "Conflicts the system under test resolved by discarding an incoming write",
                labels=["region"],
            )
            for region, count in sorted(counts.items()):
                family.add_metric([region], count)
            yield family
