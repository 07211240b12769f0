"""Shared test data: the node IPs and pod CIDRs a real `kind up` would discover."""

from __future__ import annotations

from chaosaa.kindsetup.targetfile import NodeInfo
from chaosaa.kindsetup.topology import Topology


def fake_nodes(topology: Topology) -> dict[str, list[NodeInfo]]:
    """Node containers with kind-network IPs (172.18.0.x) and per-node /24 pod CIDRs."""
    out: dict[str, list[NodeInfo]] = {}
    n = 2
    for rc in topology.regions:
        base = rc.pod_subnet.split(".0.0/")[0]
        out[rc.region] = []
        for j, name in enumerate(rc.node_names):
            out[rc.region].append(NodeInfo(name, f"172.18.0.{n}", f"{base}.{j}.0/24"))
            n += 1
    return out


def fake_node_ips(topology: Topology) -> dict[str, str]:
    return {r: infos[0].ip for r, infos in fake_nodes(topology).items()}
