"""How the kind target carries out each fault type, through ``docker`` on the host.

- blackhole, latency, bandwidth, packetLoss, replicationLag: the rules of
  :mod:`chaosaa.rules`, run with ``docker exec -i NODE nft|tc ...`` in every node
  container of the acting regions. Before a rule is applied, a watchdog shell loop is
  started in the node container (``docker exec -d NODE sh -c SCRIPT``); it reverts the
  fault's rules unless its expiry file (``/run/chaosaa/<key>.expires``, unix ms) is
  rewritten in time.
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
from chaosaa.rules.execute import execute, execute_all
from chaosaa.rules.generate import (
    Command,
    NodeRules,
    absent,
    arm_commands,
    disarm_command,
    present,
    readback,
    renew_command,
    rules_for,
    watchdog_script,
)
from chaosaa.rules.model import fault_key, node_faults
from chaosaa.spec.faults import (
    BandwidthFault,
    BlackholeFault,
    LatencyFault,
    PacketLossFault,
    RegionDownFault,
    ReplicationLagFault,
)
from chaosaa.targets.base import AppliedFault, F, FaultHandler, PlannedAction
from chaosaa.targets.kind.nodes import NODE_STATE_DIR, KindNodes

#: the demo's replication NodePort (deploy/, chaosaa/kindsetup/topology.py)
DEFAULT_REPLICATION_PORTS = (30081,)
#: never cut: the demo's metrics NodePort and Prometheus' NodePort, as the lab keeps
#: monitoring outside every fault
DEFAULT_ALLOW_PORTS = (30082, 30900)
ENV_REPLICATION_PORTS = "CHAOSAA_REPLICATION_PORTS"
ENV_ALLOW_PORTS = "CHAOSAA_KIND_ALLOW_PORTS"


def _ports(env: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get(env)
    if raw is None:
        return default
    try:
        return tuple(int(p) for p in raw.replace(",", " ").split())
    except ValueError:
        raise FaultError(f"{env}={raw!r}: give TCP ports, e.g. '30081'") from None


def _ms(ts: float) -> int:
    return int(ts * 1000)


@dataclass
class NodeRulesState:
    """The rules applied so far, per node container."""

    nodes: list[tuple[str, NodeRules]] = field(default_factory=list)


class NodeRulesOnKind(FaultHandler[KindNodes, F, NodeRulesState], Generic[F]):
    """A fault as nft/tc rules in the node containers, each guarded by a watchdog."""

    #: the kernel tool, for the plan
    tool: ClassVar[str]

    def check(self, fault: F) -> None:
        _ports(ENV_REPLICATION_PORTS, DEFAULT_REPLICATION_PORTS)
        _ports(ENV_ALLOW_PORTS, DEFAULT_ALLOW_PORTS)

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

    async def apply(self, applied: AppliedFault[F, NodeRulesState], ttl: float) -> None:
        kind = self.target
        addresses = {name: r.addresses for name, r in kind.regions.items()}
        placement = node_faults(
            applied.fault,
            addresses,
            run_id=kind.run_id,
            replication_ports=_ports(ENV_REPLICATION_PORTS, DEFAULT_REPLICATION_PORTS),
            allow_ports=_ports(ENV_ALLOW_PORTS, DEFAULT_ALLOW_PORTS),
        )
        expires = _ms(time.time() + ttl)

        async def one(node: str, region_fault: Any) -> None:
            async with kind.lock(node):
                slot = kind.take_slot(node) if region_fault.uses_tc else 1
                rules = rules_for(region_fault, slot, kind.device)
                applied.state.nodes.append((node, rules))
                run = kind.on(node)
                await execute(arm_commands(region_fault.key, expires, NODE_STATE_DIR), run)
                script = watchdog_script(region_fault.key, rules.revert, NODE_STATE_DIR)
                code, out, err = await kind.docker.run(
                    ("docker", "exec", "-d", node, "sh", "-c", script)
                )
                if code != 0:
                    raise FaultError(f"node {node}: watchdog did not start: {(err or out).strip()}")
                await execute(rules.apply, run)  # a failure is undone on every node by revert

        await asyncio.gather(
            *(
                one(node, nf)
                for region, nf in placement.items()
                for node in kind.regions[region].nodes
            )
        )

    async def _listings(self, state: NodeRulesState) -> list[tuple[str, str]]:
        async def listing(node: str, rules: NodeRules) -> tuple[str, str]:
            nft_argv, tc_argv = readback(rules.device)
            run = self.target.on(node)
            (_, nft_out, _), (_, tc_out, _) = await asyncio.gather(
                run(nft_argv, None), run(tc_argv, None)
            )
            return nft_out, tc_out

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
                problems.extend(await execute_all((disarm, *rules.revert), kind.on(node)))
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
        await execute(arm_commands(key, _ms(time.time() + ttl), kind.host_state_dir), kind.local)
        await kind.docker.spawn(("sh", "-c", watchdog_script(key, [unpause], kind.host_state_dir)))
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
