"""The demo system: one SQLite-backed KV node per region (:mod:`chaosaa.lab.node`),
replicating to every peer directly (a full mesh of replication links)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any

from chaosaa.lab.supervisor.processes import Child
from chaosaa.lab.supervisor.sockets import HOST, port
from chaosaa.lab.supervisor.system import Launcher, Listen, ReplicationLink, System


class DemoSystem(System):
    name = "demo"

    def __init__(self) -> None:
        self.regions: list[str] = []
        self._socks: dict[str, socket.socket] = {}
        #: the sockets are closed once the nodes own them; their ports stay
        self._ports: dict[str, int] = {}

    def bind(self, regions: Sequence[str], listen: Listen) -> None:
        self.regions = list(regions)
        self._socks = {r: listen() for r in regions}
        self._ports = {r: port(s) for r, s in self._socks.items()}

    def entry(self, region: str) -> int:
        return self._ports[region]

    def replication_links(self) -> list[ReplicationLink]:
        # Each node pushes its own writes to every peer (link source>target, "up").
        return [
            ReplicationLink(r, o, self.entry(o))
            for r in self.regions
            for o in self.regions
            if o != r
        ]

    def processes(self, region: str, launcher: Launcher) -> list[Child]:
        sock = self._socks[region]
        config = self.node_config(region, sock.fileno(), launcher)
        name = _node(region)
        health = f"http://{HOST}:{self.entry(region)}/healthz"
        return [launcher.python(name, "chaosaa.lab.node", config, (sock.fileno(),), health)]

    def node_config(
        self, region: str, fd: int, launcher: Launcher
    ) -> dict[str, Any] | Callable[[], dict[str, Any]]:
        """The region's node: SQLite, pushing its writes to every peer through the links."""
        return {
            "region": region,
            "fd": fd,
            "db": str(launcher.paths.data / f"{region}.sqlite"),
            "peers": {o: launcher.links[f"{region}>{o}"] for o in self.regions if o != region},
        }

    def scrape_jobs(self) -> list[dict[str, Any]]:
        return [
            {
                "job_name": "chaosaa-node",
                # Metric labels (region, source, target) are the contract: keep them.
                "honor_labels": True,
                "static_configs": [
                    {"targets": [f"{HOST}:{p}"], "labels": {"region": r}}
                    for r, p in self._ports.items()
                ],
            }
        ]

    def frozen(self, region: str) -> list[str]:
        return [_node(region)]


def _node(region: str) -> str:
    return f"node-{region}"
