"""The system under test, as one pluggable piece of the lab.

The supervisor owns the lab's frame: the global router, the link proxies, Prometheus and
the fault API. A :class:`System` fills in the regions: which processes each region runs
and on which ports, which replication paths cross region boundaries (each gets a link
proxy, so faults act on it), what Prometheus scrapes, and what regionDown freezes. The
SQLite demo (:mod:`chaosaa.lab.supervisor.demo`) is the first system.

The supervisor calls, in this order: :meth:`System.bind` (before anything starts),
:meth:`System.entry` and :meth:`System.replication_links` (to lay the links out),
:meth:`System.processes` per region (configs written, nothing started yet),
:meth:`System.scrape_jobs`; then, while the lab runs, :meth:`System.frozen` for each
regionDown.
"""

from __future__ import annotations

import json
import socket
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaosaa.lab.paths import StatePaths
from chaosaa.lab.supervisor.processes import Child

#: binds a listening socket on 127.0.0.1 (a kernel-picked port) that children inherit
Listen = Callable[[], socket.socket]


@dataclass(frozen=True)
class ReplicationLink:
    """A path replication takes across a region boundary: ``source`` connects to ``port``
    (listening in ``target``) through the link proxy ``source>target``."""

    source: str
    target: str
    port: int

    @property
    def name(self) -> str:
        return f"{self.source}>{self.target}"


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
        config: dict[str, Any],
        pass_fds: tuple[int, ...] = (),
        health_url: str | None = None,
    ) -> Child:
        """A lab module run as ``python -m MODULE --config run/NAME.json``."""
        path = self.paths.run / f"{name}.json"
        path.write_text(json.dumps(config, indent=2))
        argv = [sys.executable, "-m", module, "--config", str(path), *self._parent]
        return Child(name, argv, self.paths.logs / f"{name}.log", pass_fds, health_url)

    def binary(self, name: str, argv: list[str], health_url: str | None = None) -> Child:
        """A foreign binary (Prometheus, a database), exec'ed so it dies with the lab."""
        wrapped = [sys.executable, "-m", "chaosaa.lab._exec", *self._parent, "--", *argv]
        return Child(name, wrapped, self.paths.logs / f"{name}.log", health_url=health_url)


class System(ABC):
    """What runs in each region of a lab, how it replicates, and how it is watched."""

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
