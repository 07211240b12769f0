"""How the kubernetes target carries out each fault type: the mechanisms of each handler.

- regionDown: :class:`~chaosaa.targets.kubernetes.workloads.ScaleDown` (workloads to 0,
  nodes cordoned);
- blackhole: :class:`~chaosaa.targets.kubernetes.policies.NetworkPolicies`, plus node
  rules through the agent where every node of the cut regions runs one;
- latency, bandwidth, packetLoss, replicationLag: node rules through the agent
  (:class:`~chaosaa.targets.kubernetes.networkfaults.NetworkFaults`), required.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic

from chaosaa.spec.faults import (
    BandwidthFault,
    BlackholeFault,
    FaultBase,
    LatencyFault,
    PacketLossFault,
    RegionDownFault,
    ReplicationLagFault,
)
from chaosaa.targets.base import F
from chaosaa.targets.kubernetes.mechanism import Mechanism, MechanismHandler
from chaosaa.targets.kubernetes.networkfaults import NetworkFaults, NetworkFaultState
from chaosaa.targets.kubernetes.policies import NetworkPolicies, PolicyState
from chaosaa.targets.kubernetes.regions import Regions, named_regions, replication_ports
from chaosaa.targets.kubernetes.workloads import RegionDownState, ScaleDown


class RegionDownOnKubernetes(MechanismHandler[RegionDownFault, RegionDownState]):
    def build(self, regions: Regions) -> Sequence[Mechanism[RegionDownFault, RegionDownState]]:
        return [ScaleDown(regions)]

    def new_state(self, fault: RegionDownFault) -> RegionDownState:
        return RegionDownState()


@dataclass
class BlackholeState(PolicyState, NetworkFaultState):
    """The NetworkPolicies, and the NetworkFaults where every node runs the agent."""


class BlackholeNodeRules(NetworkFaults):
    """Node rules of a blackhole: on the cut regions' nodes, where agents run."""

    def touched(self, fault: FaultBase) -> list[str]:
        return named_regions(fault.scope())


class BlackholeOnKubernetes(MechanismHandler[BlackholeFault, BlackholeState]):
    def build(self, regions: Regions) -> Sequence[Mechanism[BlackholeFault, BlackholeState]]:
        return [NetworkPolicies(regions), BlackholeNodeRules(regions, "nft drop", required=False)]

    def new_state(self, fault: BlackholeFault) -> BlackholeState:
        return BlackholeState()


class NodeRulesOnKubernetes(MechanismHandler[F, NetworkFaultState], Generic[F]):
    """A link fault as node rules, applied by the agent on every node that acts."""

    #: the kernel tool, for the plan
    tool: ClassVar[str]

    def build(self, regions: Regions) -> Sequence[Mechanism[F, NetworkFaultState]]:
        return [NetworkFaults(regions, self.tool, ports=self.ports)]

    def ports(self) -> tuple[int, ...]:
        """The replication ports the rules act on (replicationLag only)."""
        return ()

    def new_state(self, fault: F) -> NetworkFaultState:
        return NetworkFaultState()


class LatencyOnKubernetes(NodeRulesOnKubernetes[LatencyFault]):
    tool = "tc netem"


class BandwidthOnKubernetes(NodeRulesOnKubernetes[BandwidthFault]):
    tool = "tc tbf"


class PacketLossOnKubernetes(NodeRulesOnKubernetes[PacketLossFault]):
    tool = "nft random drop"


class ReplicationLagOnKubernetes(NodeRulesOnKubernetes[ReplicationLagFault]):
    tool = "nft drop / tc htb throttle of the replication port"

    def check(self, fault: ReplicationLagFault) -> None:
        replication_ports()  # a malformed CHAOSAA_REPLICATION_PORTS is refused up front

    def ports(self) -> tuple[int, ...]:
        return replication_ports()


HANDLERS: dict[str, type[MechanismHandler[Any, Any]]] = {
    "blackhole": BlackholeOnKubernetes,
    "latency": LatencyOnKubernetes,
    "replicationLag": ReplicationLagOnKubernetes,
    "regionDown": RegionDownOnKubernetes,
    "bandwidth": BandwidthOnKubernetes,
    "packetLoss": PacketLossOnKubernetes,
}
