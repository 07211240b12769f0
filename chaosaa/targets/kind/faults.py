"""How the kind target carries out each fault type, through ``docker`` on the host.

- blackhole, latency, bandwidth, packetLoss, replicationLag: the rules of
  :mod:`chaosaa.rules`, run with ``docker exec -i NODE nft|tc ...`` in every node
  container of the acting regions. Before a rule is applied, a watchdog shell loop is
  armed and started in the node container, detached (one ``docker exec``); it reverts the
  fault's rules unless its expiry file (``/run/chaosaa/<key>.expires``, unix ms) is
  rewritten in time. Preflight tries every fault's rules in a throwaway network namespace
  of a node (``unshare -n``), so a kernel without netem refuses a latency fault before
  anything is touched.
- regionDown: ``docker pause`` / ``docker unpause`` of the region's node containers. A
  paused container cannot run anything, so the same watchdog runs on the host (detached,
  ``setsid``) and unpauses the nodes.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic

from chaosaa.errors import FaultError
from chaosaa.rules.execute import RuleError, execute, execute_all, execute_script
from chaosaa.rules.generate import Command, NodeRules, absent, present, probe, rules_for
from chaosaa.rules.model import NodeFault, fault_key, node_faults
from chaosaa.rules.shell import disarm_command, renew_command, watchdog_command
from chaosaa.spec.faults import (
    BandwidthFault,
    BlackholeFault,
    FaultBase,
    LatencyFault,
    PacketLossFault,
    RegionDownFault,
    ReplicationLagFault,
)
from chaosaa.targets.base import AppliedFault, F, FaultHandler, PlannedAction
from chaosaa.targets.kind.nodes import NODE_STATE_DIR, KindNodes, on_every

#: the demo's replication NodePort (deploy/, chaosaa/kindsetup/topology.py)
DEFAULT_REPLICATION_PORTS = (30081,)
#: never cut: the demo's metrics NodePort and Prometheus' NodePort, as the lab keeps
#: monitoring outside every fault
DEFAULT_ALLOW_PORTS = (30082, 30900)
#: the demo's client NodePort: the router (in the hub cluster) reaches every region there,
#: so a fault that leaves client traffic alone (a partition, ``clients: false``) must not
#: touch it, although it crosses the same node addresses as replication
DEFAULT_CLIENT_PORTS = (30080,)
ENV_REPLICATION_PORTS = "CHAOSAA_REPLICATION_PORTS"
ENV_ALLOW_PORTS = "CHAOSAA_KIND_ALLOW_PORTS"
ENV_CLIENT_PORTS = "CHAOSAA_KIND_CLIENT_PORTS"


def _ports(env: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get(env)
    if raw is None:
        return default
    try:
        return tuple(int(p) for p in raw.replace(",", " ").split())
    except ValueError:
        raise FaultError(f"{env}={raw!r}: give TCP ports, e.g. '30081'") from None


def _allow_ports(fault: FaultBase) -> tuple[int, ...]:
    """Ports a fault never touches: monitoring always, client traffic unless it is cut."""
    allow = _ports(ENV_ALLOW_PORTS, DEFAULT_ALLOW_PORTS)
    if fault.scope().clients:
        return allow
    return (*allow, *_ports(ENV_CLIENT_PORTS, DEFAULT_CLIENT_PORTS))


def _ms(ts: float) -> int:
    return int(ts * 1000)


@dataclass
class NodeRulesState:
    """The rules applied so far, per node container."""

    nodes: list[tuple[str, NodeRules]] = field(default_factory=list)
    #: the read-back each node printed right after its apply or revert, in the same round
    #: trip: the next verification reads it instead of asking the node again
    fresh: dict[str, tuple[str, str]] = field(default_factory=dict)


class NodeRulesOnKind(FaultHandler[KindNodes, F, NodeRulesState], Generic[F]):
    """A fault as nft/tc rules in the node containers, each guarded by a watchdog."""

    #: the kernel tool, for the plan
    tool: ClassVar[str]

    def check(self, fault: F) -> None:
        _ports(ENV_REPLICATION_PORTS, DEFAULT_REPLICATION_PORTS)
        _allow_ports(fault)

    def plan(self, fault: F) -> list[PlannedAction]:
        action = f"{fault.describe()} ({self.tool}; docker exec, in-container watchdog)"
        return [
            PlannedAction(
                fault.name,
                f"node containers of cluster {self.target.clusters[r]} (region {r})",
                action,
            )
            for r in sorted(fault.referenced_regions())
        ]

    def new_state(self, fault: F) -> NodeRulesState:
        return NodeRulesState()

    def _placement(self, fault: F) -> dict[str, NodeFault]:
        """What each acting region's nodes do for ``fault`` (after discovery)."""
        return node_faults(
            fault,
            {name: r.addresses for name, r in self.target.regions.items()},
            run_id=self.target.run_id,
            replication_ports=_ports(ENV_REPLICATION_PORTS, DEFAULT_REPLICATION_PORTS),
            allow_ports=_allow_ports(fault),
        )

    async def preflight(self, fault: F) -> None:
        """Try the fault's rules in a throwaway network namespace on one node per region."""
        kind = self.target

        async def one(region: str, region_fault: NodeFault) -> None:
            node = kind.regions[region].nodes[0]
            try:
                await execute(probe(region_fault), kind.on(node))
            except RuleError as exc:
                raise FaultError(
                    f"fault {fault.name!r}: node {node} cannot carry it out: {exc}"
                ) from None

        await on_every(one(r, nf) for r, nf in self._placement(fault).items())

    async def apply(self, applied: AppliedFault[F, NodeRulesState], ttl: float) -> None:
        kind = self.target
        expires = _ms(time.time() + ttl)

        async def one(node: str, region_fault: NodeFault) -> None:
            async with kind.lock(node):
                slot = kind.take_slot(node) if region_fault.uses_tc else 1
                rules = rules_for(region_fault, slot, kind.device)
                applied.state.nodes.append((node, rules))
                run = kind.on(node)
                watchdog = watchdog_command(region_fault.key, expires, rules.revert, NODE_STATE_DIR)
                # one round trip: arm the watchdog, apply, read back (a failure is undone
                # on every node by revert)
                done = await execute_script(
                    (watchdog, *rules.apply), run, readback_device=kind.device
                )
                applied.state.fresh[node] = (done.nft or "", done.tc or "")

        await on_every(
            one(node, nf)
            for region, nf in self._placement(applied.fault).items()
            for node in kind.regions[region].nodes
        )

    async def _listings(self, state: NodeRulesState) -> list[tuple[str, str]]:
        async def listing(node: str, rules: NodeRules) -> tuple[str, str]:
            if node in state.fresh:
                return state.fresh.pop(node)
            done = await execute_script((), self.target.on(node), readback_device=rules.device)
            return done.nft or "", done.tc or ""

        return list(await asyncio.gather(*(listing(n, r) for n, r in state.nodes)))

    async def verify(self, applied: AppliedFault[F, NodeRulesState]) -> bool:
        listings = await self._listings(applied.state)
        return all(
            present(r, n, t) for (_, r), (n, t) in zip(applied.state.nodes, listings, strict=True)
        )

    async def renew(self, applied: AppliedFault[F, NodeRulesState], ttl: float) -> None:
        expires = _ms(time.time() + ttl)
        await asyncio.gather(
            *(
                execute(
                    [renew_command(rules.fault.key, expires, NODE_STATE_DIR)], self.target.on(n)
                )
                for n, rules in applied.state.nodes
            )
        )

    async def revert(self, applied: AppliedFault[F, NodeRulesState]) -> None:
        kind = self.target
        problems: list[str] = []

        async def one(node: str, rules: NodeRules) -> None:
            async with kind.lock(node):
                disarm = disarm_command(rules.fault.key, NODE_STATE_DIR)
                done = await execute_script(
                    (disarm, *rules.revert),
                    kind.on(node),
                    keep_going=True,
                    readback_device=rules.device,
                )
                problems.extend(done.failures)
                applied.state.fresh[node] = (done.nft or "", done.tc or "")
                if rules.tc_class is not None:
                    kind.free_slot(node, rules.slot)

        await asyncio.gather(*(one(n, r) for n, r in applied.state.nodes))
        if problems:
            raise FaultError(f"fault {applied.fault.name!r}: revert: {'; '.join(problems)}")

    async def verify_reverted(self, applied: AppliedFault[F, NodeRulesState]) -> bool:
        listings = await self._listings(applied.state)
        return all(
            absent(r, n, t) for (_, r), (n, t) in zip(applied.state.nodes, listings, strict=True)
        )


class BlackholeOnKind(NodeRulesOnKind[BlackholeFault]):
    tool = "nft drop"


class LatencyOnKind(NodeRulesOnKind[LatencyFault]):
    tool = "tc netem"


class BandwidthOnKind(NodeRulesOnKind[BandwidthFault]):
    tool = "tc tbf"


class PacketLossOnKind(NodeRulesOnKind[PacketLossFault]):
    tool = "nft random drop"


class ReplicationLagOnKind(NodeRulesOnKind[ReplicationLagFault]):
    tool = "nft drop / tc htb throttle of the replication port"


@dataclass
class PauseState:
    """The paused containers and the host watchdog that unpauses them at expiry."""

    containers: list[str] = field(default_factory=list)
    key: str = ""
    unpause: Command | None = None


class RegionDownOnKind(FaultHandler[KindNodes, RegionDownFault, PauseState]):
    """``docker pause`` every node container of the regions; a host watchdog unpauses."""

    def plan(self, fault: RegionDownFault) -> list[PlannedAction]:
        return [
            PlannedAction(
                fault.name,
                f"kind cluster {self.target.clusters[r]} (region {r})",
                f"{fault.describe()} (docker pause every node container; a host watchdog "
                "unpauses at TTL)",
            )
            for r in fault.regions
        ]

    def new_state(self, fault: RegionDownFault) -> PauseState:
        return PauseState()

    async def apply(self, applied: AppliedFault[RegionDownFault, PauseState], ttl: float) -> None:
        kind, fault, st = self.target, applied.fault, applied.state
        containers = [n for r in fault.regions for n in kind.regions[r].nodes]
        key = fault_key(kind.run_id, fault.name, "pause")
        unpause = Command(("docker", "unpause", *containers), tolerate=("is not paused",))
        st.containers, st.key, st.unpause = containers, key, unpause
        watchdog = watchdog_command(key, _ms(time.time() + ttl), [unpause], kind.host_state_dir)
        await execute([watchdog], kind.local)
        code, out, err = await kind.docker.run(("docker", "pause", *containers))
        if code != 0:
            raise FaultError(f"fault {fault.name!r}: docker pause failed: {(err or out).strip()}")

    async def verify(self, applied: AppliedFault[RegionDownFault, PauseState]) -> bool:
        return all((await self.target.paused(applied.state.containers)).values())

    async def renew(self, applied: AppliedFault[RegionDownFault, PauseState], ttl: float) -> None:
        cmd = renew_command(applied.state.key, _ms(time.time() + ttl), self.target.host_state_dir)
        await execute([cmd], self.target.local)

    async def revert(self, applied: AppliedFault[RegionDownFault, PauseState]) -> None:
        st = applied.state
        if st.unpause is None:
            return  # the injection stopped before it touched anything
        disarm = disarm_command(st.key, self.target.host_state_dir)
        failures = await execute_all([disarm, st.unpause], self.target.local)
        if failures:
            raise FaultError(f"fault {applied.fault.name!r}: {'; '.join(failures)}")

    async def verify_reverted(self, applied: AppliedFault[RegionDownFault, PauseState]) -> bool:
        return not any((await self.target.paused(applied.state.containers)).values())


HANDLERS: dict[str, type[FaultHandler[KindNodes, Any, Any]]] = {
    "blackhole": BlackholeOnKind,
    "latency": LatencyOnKind,
    "replicationLag": ReplicationLagOnKind,
    "regionDown": RegionDownOnKind,
    "bandwidth": BandwidthOnKind,
    "packetLoss": PacketLossOnKind,
}
