"""The ``kind`` target: kind clusters on Docker, one cluster per region.

Everything goes through the docker CLI (the :class:`DockerRunner` seam):

- nodes are the containers labelled ``io.x-k8s.kind.cluster=<cluster>``; a region's
  addresses are its nodes' container IPs plus the cluster's pod subnet (from
  ``/kind/kubeadm.conf`` in the node);
- blackhole, latency, bandwidth, packetLoss, replicationLag: the rules of
  :mod:`chaosaa.rules`, run with ``docker exec -i NODE nft|tc ...`` in every node
  container of the acting regions;
- regionDown: ``docker pause`` / ``docker unpause`` of the region's node containers.

Dead-man switch: before a node rule is applied, a watchdog shell loop is started in the
node container (``docker exec -d NODE sh -c SCRIPT``); it reverts the fault's rules unless
its expiry file (``/run/chaosaa/<key>.expires``, unix ms) is rewritten in time. A paused
container cannot run anything, so for regionDown the same watchdog runs on the host
(detached, ``setsid``) and unpauses the nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from chaosaa.errors import ChaosaaError, FaultError, LeaseHeldError, TargetUnreachableError
from chaosaa.rules.execute import execute, execute_all, run_process
from chaosaa.rules.generate import (
    MAX_SLOT,
    Command,
    NodeRules,
    absent,
    arm_commands,
    disarm_command,
    owned,
    present,
    readback,
    renew_command,
    rules_for,
    teardown,
    watchdog_script,
)
from chaosaa.rules.model import NodeFault, fault_key, node_faults
from chaosaa.spec.model import FAULT_TYPES, Fault, RegionDownFault
from chaosaa.targets.base import AppliedFault, Endpoints, PlannedAction, Target, register

log = logging.getLogger(__name__)

CLUSTER_LABEL = "io.x-k8s.kind.cluster"
#: where watchdogs keep their expiry/pid/log files inside a node container (a tmpfs)
NODE_STATE_DIR = "/run/chaosaa"
#: the demo's replication NodePort (deploy/, chaosaa/kindsetup/topology.py)
DEFAULT_REPLICATION_PORTS = (30081,)
#: never cut: the demo's metrics NodePort and Prometheus' NodePort, as the lab keeps
#: monitoring outside every fault
DEFAULT_ALLOW_PORTS = (30082, 30900)
DEFAULT_DEVICE = "eth0"
ENV_REPLICATION_PORTS = "CHAOSAA_REPLICATION_PORTS"
ENV_ALLOW_PORTS = "CHAOSAA_KIND_ALLOW_PORTS"
ENV_DEVICE = "CHAOSAA_KIND_DEVICE"
_POD_SUBNET = re.compile(r"podSubnet:\s*\"?([0-9A-Fa-f.:/, ]+)\"?")
DOCKER_TIMEOUT = 30.0


class DockerRunner(Protocol):
    """The docker CLI seam: run a command to completion, or start one detached."""

    async def run(self, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]: ...

    async def spawn(self, argv: Sequence[str]) -> None: ...


class SubprocessDocker:
    """Runs the real docker CLI (and local shell for the host-side watchdog)."""

    def __init__(self, timeout: float = DOCKER_TIMEOUT) -> None:
        self.timeout = timeout

    async def run(self, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
        return await run_process(argv, stdin, self.timeout)

    async def spawn(self, argv: Sequence[str]) -> None:
        await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # survives the runner: that is the point
        )


def _ports(env: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get(env)
    if raw is None:
        return default
    try:
        return tuple(int(p) for p in raw.replace(",", " ").split())
    except ValueError:
        raise FaultError(f"{env}={raw!r}: give TCP ports, e.g. '30081'") from None


@dataclass
class KindRegion:
    name: str
    cluster: str
    nodes: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)


@register
class KindTarget(Target):
    """kind clusters driven through the docker CLI."""

    kind: ClassVar[str] = "kind"
    supported_faults: ClassVar[frozenset[str]] = frozenset(FAULT_TYPES)
    #: each poll runs `docker exec` on every node of the fault
    verify_interval: ClassVar[float] = 0.05

    def __init__(self, spec: Any, options: Any, runner: DockerRunner | None = None) -> None:
        super().__init__(spec, options)
        self.docker: DockerRunner = runner or options.extra.get("docker") or SubprocessDocker()
        self.regions: dict[str, KindRegion] = {}
        self.device = os.environ.get(ENV_DEVICE) or DEFAULT_DEVICE
        self._slots: dict[str, set[int]] = {}
        self._node_locks: dict[str, asyncio.Lock] = {}
        self._lease_path: Path | None = None

    # -- pure ----------------------------------------------------------------------
    def cluster(self, region: str) -> str:
        return self.spec.regions[region].cluster or region

    def plan(self, fault: Fault) -> list[PlannedAction]:
        if isinstance(fault, RegionDownFault):
            return [
                PlannedAction(
                    fault.name,
                    f"kind cluster {self.cluster(r)} (region {r})",
                    "docker pause every node container (host watchdog unpauses at TTL)",
                )
                for r in fault.regions
            ]
        what = {
            "blackhole": "nft drop",
            "latency": "tc netem delay",
            "bandwidth": "tc tbf limit",
            "packetLoss": "nft random drop",
            "replicationLag": "nft drop / tc htb throttle of the replication port",
        }[fault.type]
        regions = sorted(fault.referenced_regions())
        return [
            PlannedAction(
                fault.name,
                f"node containers of cluster {self.cluster(r)} (region {r})",
                f"{what} (docker exec; in-container watchdog reverts at TTL)",
            )
            for r in regions
        ]

    # -- discovery -----------------------------------------------------------------
    async def _docker(self, *argv: str, stdin: str | None = None) -> str:
        code, out, err = await self.docker.run(("docker", *argv), stdin)
        if code != 0:
            raise TargetUnreachableError(
                f"`docker {shlex.join(argv)}` failed: {(err or out).strip()[:300]}"
            )
        return out

    async def _discover(self, region: str, cluster: str) -> KindRegion:
        out = await self._docker(
            "ps", "--filter", f"label={CLUSTER_LABEL}={cluster}", "--format", "{{.Names}}"
        )
        nodes = sorted(n for n in out.split() if n)
        if not nodes:
            raise TargetUnreachableError(
                f"no node containers of kind cluster {cluster!r} (region {region}); "
                "is it running? (`chaosaa kind up`)"
            )
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.GlobalIPv6Address}} {{end}}"
        ips = (await self._docker("inspect", "-f", fmt, *nodes)).split()
        conf = await self._docker("exec", nodes[0], "cat", "/kind/kubeadm.conf")
        subnets = [
            s.strip()
            for m in _POD_SUBNET.finditer(conf)
            for s in m.group(1).split(",")
            if s.strip()
        ]
        return KindRegion(region, cluster, nodes, sorted({*ips, *subnets}))

    async def open(self) -> Endpoints:
        names = list(self.spec.regions)
        found = await asyncio.gather(*(self._discover(r, self.cluster(r)) for r in names))
        self.regions = dict(zip(names, found, strict=True))
        return Endpoints(
            entry_url=self.spec.url,
            regions={n: r.endpoint for n, r in self.spec.regions.items() if r.endpoint},
        )

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

    # -- node commands -------------------------------------------------------------
    def _on(self, node: str) -> Any:
        """A rules transport running commands in ``node`` through ``docker exec``."""

        async def run(argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
            flags = ("-i",) if stdin is not None else ()
            return await self.docker.run(("docker", "exec", *flags, node, *argv), stdin)

        return run

    def _lock(self, node: str) -> asyncio.Lock:
        return self._node_locks.setdefault(node, asyncio.Lock())

    def _take_slot(self, node: str) -> int:
        used = self._slots.setdefault(node, set())
        for slot in range(1, MAX_SLOT + 1):
            if slot not in used:
                used.add(slot)
                return slot
        raise FaultError(f"node {node}: no free tc slot")

    # -- faults --------------------------------------------------------------------
    async def inject(self, fault: Fault, ttl: float) -> AppliedFault:
        """Inject; if cancelled (SIGTERM) or failing midway, finish and undo it first."""
        applied = AppliedFault(fault, fault.name, self.plan(fault), {"nodes": []})
        work = asyncio.ensure_future(self._inject(applied, ttl))
        try:
            await asyncio.shield(work)
        except (asyncio.CancelledError, ChaosaaError):
            await asyncio.shield(self._undo(work, applied))
            raise
        return applied

    async def _undo(self, work: asyncio.Future[None], applied: AppliedFault) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(work), timeout=60)
        try:
            await self.revert(applied)
        except ChaosaaError as exc:
            log.error("fault %s: revert after a failed injection: %s", applied.fault.name, exc)

    async def _inject(self, applied: AppliedFault, ttl: float) -> None:
        fault = applied.fault
        if isinstance(fault, RegionDownFault):
            await self._pause(applied, ttl)
            return
        addresses = {name: r.addresses for name, r in self.regions.items()}
        placement = node_faults(
            fault,
            addresses,
            run_id=self.options.run_id,
            replication_ports=_ports(ENV_REPLICATION_PORTS, DEFAULT_REPLICATION_PORTS),
            allow_ports=_ports(ENV_ALLOW_PORTS, DEFAULT_ALLOW_PORTS),
        )
        expires = _ms(time.time() + ttl)

        async def one(node: str, node_fault: NodeFault) -> None:
            async with self._lock(node):
                slot = self._take_slot(node) if node_fault.uses_tc else 1
                rules = rules_for(node_fault, slot, self.device)
                applied.state["nodes"].append((node, rules))
                run = self._on(node)
                await execute(arm_commands(node_fault.key, expires, NODE_STATE_DIR), run)
                script = watchdog_script(node_fault.key, rules.revert, NODE_STATE_DIR)
                code, out, err = await self.docker.run(
                    ("docker", "exec", "-d", node, "sh", "-c", script)
                )
                if code != 0:
                    raise FaultError(f"node {node}: watchdog did not start: {(err or out).strip()}")
                await execute(rules.apply, run)  # a failure is undone on every node by _undo

        await asyncio.gather(
            *(
                one(node, nf)
                for region, nf in placement.items()
                for node in self.regions[region].nodes
            )
        )

    async def verify_effect(self, applied: AppliedFault) -> bool:
        if isinstance(applied.fault, RegionDownFault):
            return all((await self._paused(applied.state["containers"])).values())
        nodes = applied.state["nodes"]
        listings = await asyncio.gather(*(self._listing(n, r) for n, r in nodes))
        return all(present(r, n, t) for (_, r), (n, t) in zip(nodes, listings, strict=True))

    async def _listing(self, node: str, rules: NodeRules) -> tuple[str, str]:
        nft_argv, tc_argv = readback(rules.device)
        run = self._on(node)
        (_, nft_out, _), (_, tc_out, _) = await asyncio.gather(
            run(nft_argv, None), run(tc_argv, None)
        )
        return nft_out, tc_out

    async def renew(self, applied: AppliedFault, ttl: float) -> None:
        expires = _ms(time.time() + ttl)
        if isinstance(applied.fault, RegionDownFault):
            cmd = renew_command(applied.state["key"], expires, applied.state["stateDir"])
            await execute([cmd], self._local)
            return
        await asyncio.gather(
            *(
                execute([renew_command(rules.fault.key, expires, NODE_STATE_DIR)], self._on(node))
                for node, rules in applied.state["nodes"]
            )
        )

    async def revert(self, applied: AppliedFault) -> None:
        if isinstance(applied.fault, RegionDownFault):
            await self._unpause(applied)
            return
        problems: list[str] = []

        async def one(node: str, rules: NodeRules) -> None:
            async with self._lock(node):
                run = self._on(node)
                problems.extend(
                    await execute_all(
                        (disarm_command(rules.fault.key, NODE_STATE_DIR), *rules.revert), run
                    )
                )
                if rules.tc_class is not None:
                    self._slots.get(node, set()).discard(rules.slot)

        await asyncio.gather(*(one(n, r) for n, r in applied.state["nodes"]))
        if problems:
            raise FaultError(f"fault {applied.fault.name!r}: revert: {'; '.join(problems)}")

    async def verify_reverted(self, applied: AppliedFault) -> bool:
        if isinstance(applied.fault, RegionDownFault):
            return not any((await self._paused(applied.state["containers"])).values())
        nodes = applied.state["nodes"]
        listings = await asyncio.gather(*(self._listing(n, r) for n, r in nodes))
        return all(absent(r, n, t) for (_, r), (n, t) in zip(nodes, listings, strict=True))

    # -- regionDown ----------------------------------------------------------------
    async def _local(self, argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
        return await self.docker.run(argv, stdin)

    async def _pause(self, applied: AppliedFault, ttl: float) -> None:
        fault = applied.fault
        assert isinstance(fault, RegionDownFault)
        containers = [n for r in fault.regions for n in self.regions[r].nodes]
        key = fault_key(self.options.run_id, fault.name, "pause")
        state_dir = str(Path(self.options.state_dir or tempfile.gettempdir()) / "chaosaa-kind")
        unpause = Command(("docker", "unpause", *containers), tolerate=("is not paused",))
        applied.state.update(containers=containers, key=key, stateDir=state_dir, unpause=unpause)
        await execute(arm_commands(key, _ms(time.time() + ttl), state_dir), self._local)
        await self.docker.spawn(("sh", "-c", watchdog_script(key, [unpause], state_dir)))
        code, out, err = await self.docker.run(("docker", "pause", *containers))
        if code != 0:
            raise FaultError(f"fault {fault.name!r}: docker pause failed: {(err or out).strip()}")

    async def _unpause(self, applied: AppliedFault) -> None:
        st = applied.state
        if "key" not in st:
            return  # the injection stopped before it touched anything
        failures = await execute_all(
            [disarm_command(st["key"], st["stateDir"]), st["unpause"]], self._local
        )
        if failures:
            raise FaultError(f"fault {applied.fault.name!r}: {'; '.join(failures)}")

    async def _paused(self, containers: Sequence[str]) -> dict[str, bool]:
        out = await self._docker("inspect", "-f", "{{.Name}} {{.State.Paused}}", *containers)
        state = {}
        for line in out.splitlines():
            name, _, paused = line.strip().lstrip("/").partition(" ")
            state[name] = paused == "true"
        return state

    # -- rollback ------------------------------------------------------------------
    async def _all_clusters(self) -> list[str]:
        fmt = f'{{{{.Label "{CLUSTER_LABEL}"}}}}'
        out = await self._docker("ps", "--filter", f"label={CLUSTER_LABEL}", "--format", fmt)
        return sorted({c for c in out.split() if c})

    async def rollback(self) -> list[str]:
        if self.options.extra.get("all"):
            clusters = await self._all_clusters()
            self.regions = {c: await self._discover(c, c) for c in clusters}
        elif not self.regions:
            await self.open()
        done: list[str] = []
        for region in self.regions.values():
            paused = [n for n, p in (await self._paused(region.nodes)).items() if p]
            if paused:
                await self._docker("unpause", *paused)
                done += [f"container {n}: unpaused" for n in paused]
            for node in region.nodes:
                done += await self._clean_node(node)
        return done

    async def _clean_node(self, node: str) -> list[str]:
        run = self._on(node)
        # disarm every watchdog first: none may race the teardown
        wipe = f"rm -f {NODE_STATE_DIR}/*.pid {NODE_STATE_DIR}/*.expires"
        await run(("sh", "-c", wipe), None)
        _, links, _ = await run(("ip", "-o", "link", "show"), None)
        devs = [
            line.split(":", 2)[1].strip().split("@")[0]
            for line in links.splitlines()
            if line.count(":") >= 2
        ] or [self.device]
        nft_argv, _ = readback(self.device)
        _, nft_before, _ = await run(nft_argv, None)
        tc_before = {d: (await run(readback(d)[1], None))[1] for d in devs}
        found = owned(nft_before, tc_before)
        failures = await execute_all(teardown(devs), run)
        return [f"node {node}: {f} removed" for f in found] + [
            f"node {node}: {f}" for f in failures
        ]


def _ms(ts: float) -> int:
    return int(ts * 1000)
