"""The ``kind`` target: kind clusters on Docker, one cluster per region.

Everything goes through the docker CLI (the :class:`DockerRunner` seam): nodes are the
containers labelled ``io.x-k8s.kind.cluster=<cluster>``; a region's addresses are its
nodes' container IPs plus the cluster's pod subnet (from ``/kind/kubeadm.conf`` in the
node). How each fault type is carried out: :mod:`chaosaa.targets.kind.faults`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

from chaosaa.errors import LeaseHeldError, TargetUnreachableError
from chaosaa.rules.execute import execute_all
from chaosaa.rules.generate import owned, teardown
from chaosaa.rules.shell import disarm_all_command, inventory_command, parse_inventory
from chaosaa.spec.model import Target as TargetSpec
from chaosaa.targets.base import Endpoints, Target, TargetEvent, TargetOptions, register
from chaosaa.targets.kind.faults import HANDLERS
from chaosaa.targets.kind.nodes import (
    NODE_STATE_DIR,
    DockerRunner,
    KindNodes,
    KindRegion,
    SubprocessDocker,
)

log = logging.getLogger(__name__)

CLUSTER_LABEL = "io.x-k8s.kind.cluster"
#: the conflict counter of the demo `chaosaa kind up` deploys (last-writer-wins
#: resolutions); the engine reports its before/after difference, none where it is absent
DEMO_CONFLICTS = "sum(chaosaa_demo_conflicts_total)"
#: the demo router's event log (failovers with exact timestamps), under the router's URL
ROUTER_EVENTS = "/router/events"
_EVENTS_TIMEOUT = 5.0
_POD_SUBNET = re.compile(r"podSubnet:\s*\"?([0-9A-Fa-f.:/, ]+)\"?")


@register
class KindTarget(Target):
    """kind clusters driven through the docker CLI."""

    kind: ClassVar[str] = "kind"
    handlers = HANDLERS
    #: each poll runs `docker exec` on every node of the fault
    verify_interval: ClassVar[float] = 0.05

    def __init__(
        self, spec: TargetSpec, options: TargetOptions, runner: DockerRunner | None = None
    ) -> None:
        docker: DockerRunner = runner or options.extra.get("docker") or SubprocessDocker()
        clusters = {r: spec.regions[r].cluster or r for r in spec.regions}
        self.nodes = KindNodes(docker, clusters, options.run_id, options.state_dir)
        self._lease_path: Path | None = None
        super().__init__(spec, options)

    def handler_context(self) -> KindNodes:
        return self.nodes

    @property
    def docker(self) -> DockerRunner:
        return self.nodes.docker

    @property
    def regions(self) -> dict[str, KindRegion]:
        return self.nodes.regions

    def cluster(self, region: str) -> str:
        return self.nodes.clusters[region]

    # -- discovery -----------------------------------------------------------------
    async def _find_nodes(self, region: str, cluster: str) -> KindRegion:
        """The cluster's node containers (also while they are paused)."""
        out = await self.nodes.docker_ok(
            "ps", "--filter", f"label={CLUSTER_LABEL}={cluster}", "--format", "{{.Names}}"
        )
        nodes = sorted(n for n in out.split() if n)
        if not nodes:
            raise TargetUnreachableError(
                f"no node containers of kind cluster {cluster!r} (region {region}); "
                "is it running? (`chaosaa kind up`)"
            )
        return KindRegion(region, cluster, nodes)

    async def _discover(self, region: str, cluster: str) -> KindRegion:
        """The nodes and the addresses node rules act on: node IPs and the pod subnet."""
        found = await self._find_nodes(region, cluster)
        nodes = found.nodes
        if any((await self.nodes.paused(nodes)).values()):
            raise TargetUnreachableError(
                f"kind cluster {cluster!r} (region {region}) is paused: a regionDown of a run "
                "that was killed? It unpauses by itself at the fault's TTL, or now with "
                "`chaosaa rollback`"
            )
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.GlobalIPv6Address}} {{end}}"
        ips = (await self.nodes.docker_ok("inspect", "-f", fmt, *nodes)).split()
        conf = await self.nodes.docker_ok("exec", nodes[0], "cat", "/kind/kubeadm.conf")
        subnets = [
            s.strip()
            for m in _POD_SUBNET.finditer(conf)
            for s in m.group(1).split(",")
            if s.strip()
        ]
        return KindRegion(region, cluster, nodes, sorted({*ips, *subnets}))

    async def _find_regions(self, *, rollback: bool) -> None:
        if self.options.extra.get("all"):
            # `chaosaa rollback --target kind`: every kind cluster, each its own region
            clusters = {c: c for c in await self._all_clusters()}
        else:
            clusters = {r: self.cluster(r) for r in self.spec.regions}
        # rollback needs the node containers only, and must find them paused too
        discover = self._find_nodes if rollback else self._discover
        found = await asyncio.gather(*(discover(r, c) for r, c in clusters.items()))
        self.nodes.regions = dict(zip(clusters, found, strict=True))

    async def open(self) -> Endpoints:
        await self._find_regions(rollback=bool(self.options.extra.get("rollback")))
        if self.options.extra.get("all"):
            return Endpoints(entry_url=None)
        return Endpoints(
            entry_url=self.spec.url,
            regions={n: r.endpoint for n, r in self.spec.regions.items() if r.endpoint},
            queries={"conflicts": DEMO_CONFLICTS},
        )

    async def events(self, since: float) -> list[TargetEvent]:
        """The demo router's own log, as the lab gives it: none where there is no such
        router (another application on kind) or it does not answer."""
        if not self.spec.url:
            return []
        url = self.spec.url.rstrip("/") + ROUTER_EVENTS
        try:
            doc = await asyncio.to_thread(_get_json, url, _EVENTS_TIMEOUT)
        except (OSError, ValueError) as exc:
            log.info("no router events from %s: %s", url, exc)
            return []
        events = doc.get("events") if isinstance(doc, dict) else None
        return [
            TargetEvent(
                at=float(e["unix"]),
                event=f"router.{e['event']}",
                detail={k: v for k, v in e.items() if k not in ("event", "unix", "ts")},
            )
            for e in events or []
            if isinstance(e, dict) and float(e.get("unix", 0)) >= since and "event" in e
        ]

    # -- lease (a file on this host: kind clusters are local) ----------------------
    def _lease_file(self) -> Path:
        clusters = ",".join(sorted(self.cluster(r) for r in self.spec.regions))
        digest = hashlib.sha256(clusters.encode()).hexdigest()[:12]
        base = Path(self.options.state_dir or Path.home() / ".chaosaa" / "kind")
        return base / f"lease-{digest}.json"

    async def acquire_lease(self, holder: str, ttl: float) -> None:
        path = self._lease_file()

        def take() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            now = time.time()
            with contextlib.suppress(FileNotFoundError, ValueError):
                doc = json.loads(path.read_text())
                if doc.get("holder") != holder and float(doc.get("expires", 0)) > now:
                    raise LeaseHeldError(
                        f"target is busy: run {doc.get('holder')!r} holds the kind lease "
                        f"{path} (expires in {float(doc['expires']) - now:.0f}s unless renewed)"
                    )
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"holder": holder, "expires": now + ttl}))
            tmp.replace(path)

        await asyncio.to_thread(take)
        self._lease_path = path

    async def renew_lease(self, holder: str, ttl: float) -> None:
        await self.acquire_lease(holder, ttl)

    async def release_lease(self, holder: str) -> None:
        path = self._lease_path
        if path is None:
            return

        def drop() -> None:
            with contextlib.suppress(FileNotFoundError, ValueError):
                if json.loads(path.read_text()).get("holder") == holder:
                    path.unlink()

        await asyncio.to_thread(drop)
        self._lease_path = None

    # -- rollback ------------------------------------------------------------------
    async def _all_clusters(self) -> list[str]:
        fmt = f'{{{{.Label "{CLUSTER_LABEL}"}}}}'
        out = await self.nodes.docker_ok(
            "ps", "--filter", f"label={CLUSTER_LABEL}", "--format", fmt
        )
        return sorted({c for c in out.split() if c})

    async def rollback(self) -> list[str]:
        if not self.regions:
            await self._find_regions(rollback=True)
        # the host watchdogs first, so that none unpauses behind our back later
        await execute_all([disarm_all_command(self.nodes.host_state_dir)], self.nodes.local)
        nodes = [n for r in self.regions.values() for n in r.nodes]
        done: list[str] = []
        paused = [n for n, p in (await self.nodes.paused(nodes)).items() if p] if nodes else []
        if paused:
            await self.nodes.docker_ok("unpause", *paused)
            done += [f"container {n}: unpaused" for n in paused]
        for cleaned in await asyncio.gather(*(self._clean_node(n) for n in nodes)):
            done += cleaned
        return done

    async def _clean_node(self, node: str) -> list[str]:
        run = self.nodes.on(node)
        inventory = inventory_command(NODE_STATE_DIR)
        code, out, err = await run(inventory.argv, None)
        if code != 0:
            return [f"node {node}: could not list its rules: {(err or out).strip()[:200]}"]
        nft_listing, tc_listings = parse_inventory(out)
        found = owned(nft_listing, tc_listings)
        if not found:
            return []
        rooted = [d for d, listing in tc_listings.items() if owned("", {d: listing})]
        failures = await execute_all(teardown(rooted), run)
        return [f"node {node}: {f} removed" for f in found] + [
            f"node {node}: {f}" for f in failures
        ]


def _get_json(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())
