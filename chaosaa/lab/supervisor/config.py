"""A lab's layout, rendered before anything starts: every port bound, every link laid out,
every child's config written (node/router/proxy configs, ``prometheus.yml``)."""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from typing import Any

import yaml

from chaosaa.lab.faults import ROUTER, Link, Topology
from chaosaa.lab.paths import StatePaths
from chaosaa.lab.supervisor.processes import Child
from chaosaa.lab.supervisor.sockets import HOST, free_port, listen_socket, port, url
from chaosaa.lab.supervisor.system import Flow, Launcher, Protocol, ReplicationLink, System


@dataclass(frozen=True)
class _LinkSocket:
    sock: socket.socket
    source: str
    target: str
    upstream_port: int
    kind: str = "client"
    flows: tuple[Flow, ...] = ()
    protocol: Protocol = "http"


class Layout:
    """Every port, link, URL and child process of one lab."""

    def __init__(
        self,
        paths: StatePaths,
        regions: list[str],
        system: System,
        prometheus_bin: str,
        router_policy: dict[str, Any],
    ) -> None:
        self.paths = paths
        self.regions = regions
        self.system = system
        self._sockets: list[socket.socket] = []
        _prepare_state_dir(paths)
        self.admin_sock = self._listen()
        system.bind(regions, self._listen)
        router_sock = self._listen()
        proxy_admin = self._listen()
        links = self._bind_links()
        prom_port = free_port()

        self.admin_url = url(self.admin_sock)
        self.router_url = url(router_sock)
        self.proxy_url = url(proxy_admin)
        self.prometheus_url = f"http://{HOST}:{prom_port}"
        self.node_urls = {r: f"http://{HOST}:{system.entry(r)}" for r in regions}
        self.link_urls = {name: url(ls.sock) for name, ls in links.items()}
        self.link_addresses = {name: (HOST, port(ls.sock)) for name, ls in links.items()}
        #: link name -> what a verification probe sends through it
        self.link_protocols = {name: ls.protocol for name, ls in links.items()}
        self._links = links
        self.link_info = {
            name: {
                "url": url(ls.sock),
                "upstream": f"{HOST}:{ls.upstream_port}",
                "kind": ls.kind,
                "source": ls.source,
                "target": ls.target,
                **({"flows": [list(f) for f in ls.flows]} if ls.flows else {}),
            }
            for name, ls in links.items()
        }

        launcher = Launcher(paths, self.link_urls, os.getpid())
        self.children: dict[str, Child] = {}
        #: region -> the name of its service process (the first of its processes)
        self.region_process: dict[str, str] = {}
        for r in regions:
            procs = system.processes(r, launcher)
            self.region_process[r] = procs[0].name
            self.children.update((c.name, c) for c in procs)
        #: the components of the lab's status, in its order
        self.components = [*self.children, "router", "proxy", "prometheus"]
        self.children["proxy"] = launcher.python(
            "proxy",
            "chaosaa.lab.proxy",
            {
                "adminFd": proxy_admin.fileno(),
                "links": [
                    {
                        "name": name,
                        "fd": ls.sock.fileno(),
                        "upstreamHost": HOST,
                        "upstreamPort": ls.upstream_port,
                    }
                    for name, ls in links.items()
                ],
            },
            (proxy_admin.fileno(), *(ls.sock.fileno() for ls in links.values())),
            f"{self.proxy_url}/healthz",
        )
        self.children["router"] = launcher.python(
            "router",
            "chaosaa.lab.router",
            {
                "fd": router_sock.fileno(),
                "regions": {r: self.link_urls[f"{ROUTER}>{r}"] for r in regions},
                "eventLog": str(paths.events),
                "policy": router_policy,
            },
            (router_sock.fileno(),),
            f"{self.router_url}/healthz",
        )
        prom_cfg = paths.run / "prometheus.yml"
        self.children["prometheus"] = launcher.binary(
            "prometheus",
            [
                prometheus_bin,
                f"--config.file={prom_cfg}",
                f"--storage.tsdb.path={paths.prometheus_data}",
                f"--web.listen-address={HOST}:{prom_port}",
                "--storage.tsdb.retention.time=1d",
                "--web.enable-lifecycle",
            ],
            f"{self.prometheus_url}/-/ready",
        )

        def write_prometheus_config() -> None:
            # Written when Prometheus starts: a system's exporters run only by then.
            config = self.prometheus_config
            prom_cfg.write_text(yaml.safe_dump(config, sort_keys=False))

        self.children["prometheus"].prepare = write_prometheus_config

    def _listen(self) -> socket.socket:
        s = listen_socket()
        self._sockets.append(s)
        return s

    def _bind_links(self) -> dict[str, _LinkSocket]:
        """A client link ``router><r>`` per region, then the replication links it sources."""
        replication = self.system.replication_links()
        links: dict[str, _LinkSocket] = {}
        for r in self.regions:
            links[f"{ROUTER}>{r}"] = _LinkSocket(self._listen(), ROUTER, r, self.system.entry(r))
            for rl in replication:
                if rl.source == r:
                    links[rl.name] = self._link_socket(rl)
        return links

    def _link_socket(self, rl: ReplicationLink) -> _LinkSocket:
        return _LinkSocket(
            self._listen(), rl.source, rl.target, rl.port, rl.kind, rl.data_flows, rl.protocol
        )

    @property
    def topology(self) -> Topology:
        """What faults act on: the links, and the namespaced regions' addresses (known
        once the system runs)."""
        links = tuple(
            Link(name, ls.source, ls.target, ls.kind, ls.flows) for name, ls in self._links.items()
        )
        addresses = {r: net.ip for r, net in self.system.network().items()}
        return Topology(tuple(self.regions), links, addresses, self.system.replication_ports())

    def close_inherited(self) -> None:
        """Close our copies of the children's sockets: they would keep ports open after a
        child died and make "port closed" checks lie."""
        for s in self._sockets:
            if s is not self.admin_sock:
                s.close()

    @property
    def prometheus_config(self) -> dict[str, Any]:
        """``prometheus.yml``: the system's scrape jobs and the lab's own."""

        def job(name: str, target_url: str) -> dict[str, Any]:
            target = target_url.removeprefix("http://")
            return {
                "job_name": name,
                "honor_labels": True,
                "static_configs": [{"targets": [target]}],
            }

        return {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "900ms",
                "evaluation_interval": "1s",
            },
            "scrape_configs": [
                *self.system.scrape_jobs(),
                job("chaosaa-router", self.router_url),
                job("chaosaa-proxy", self.proxy_url),
                job("chaosaa-supervisor", self.admin_url),
            ],
        }

    def scrape_targets(self) -> int:
        """How many targets Prometheus scrapes once the lab is up."""
        return sum(
            len(static["targets"])
            for job in self.prometheus_config["scrape_configs"]
            for static in job["static_configs"]
        )


def _prepare_state_dir(paths: StatePaths) -> None:
    for d in (paths.logs, paths.run):
        d.mkdir(parents=True, exist_ok=True)
    for d in (paths.data, paths.prometheus_data):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    paths.events.write_text("")
