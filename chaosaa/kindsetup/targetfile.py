"""The target file ``chaosaa kind up`` writes: a GameDay-shaped description of the clusters.

It is a valid GameDay (``chaosaa validate`` accepts it) with no faults: ``spec.target``
and ``spec.prometheus`` are exactly what a kind GameDay needs (copy them, or run the file
to drive traffic only). What only the kind target needs — node containers, their IPs and
pod CIDRs, subnets, NodePorts — is in the annotation ``kind.chaosaa.io/topology`` (JSON),
so the file needs no schema of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chaosaa.kindsetup.topology import (
    CLIENT_NODE_PORT,
    METRICS_NODE_PORT,
    NAMESPACE,
    PROMETHEUS_NODE_PORT,
    REPLICATION_NODE_PORT,
    ROUTER_NODE_PORT,
    Topology,
)

TARGET_FILE = "kind-target.yaml"
TOPOLOGY_ANNOTATION = "kind.chaosaa.io/topology"


@dataclass(frozen=True)
class NodeInfo:
    """A node container of a kind cluster, as discovered after creation."""

    name: str
    ip: str
    pod_cidr: str


def gameday_target(topology: Topology) -> dict[str, Any]:
    """``spec.target`` and ``spec.prometheus`` of every kind GameDay (fixed host ports)."""
    return {
        "target": {
            "kind": "kind",
            "url": topology.router_url,
            "regions": {
                rc.region: {"cluster": rc.cluster, "endpoint": rc.endpoint}
                for rc in topology.regions
            },
        },
        "prometheus": {"url": topology.prometheus_url},
    }


def topology_annotation(topology: Topology, nodes: Mapping[str, Sequence[NodeInfo]]) -> str:
    return json.dumps(
        {
            "schemaVersion": 1,
            "namespace": NAMESPACE,
            "hub": topology.hub.region,
            "nodePorts": {
                "clients": CLIENT_NODE_PORT,
                "replication": REPLICATION_NODE_PORT,
                "metrics": METRICS_NODE_PORT,
                "router": ROUTER_NODE_PORT,
                "prometheus": PROMETHEUS_NODE_PORT,
            },
            "regions": {
                rc.region: {
                    "cluster": rc.cluster,
                    "context": rc.context,
                    "podSubnet": rc.pod_subnet,
                    "serviceSubnet": rc.service_subnet,
                    "apiServer": f"https://127.0.0.1:{rc.api_server_port}",
                    "nodes": [
                        {"name": n.name, "ip": n.ip, "podCIDR": n.pod_cidr}
                        for n in nodes.get(rc.region, ())
                    ],
                }
                for rc in topology.regions
            },
        },
        sort_keys=False,
    )


def target_document(topology: Topology, nodes: Mapping[str, Sequence[NodeInfo]]) -> dict[str, Any]:
    names = ", ".join(topology.names)
    return {
        "apiVersion": "chaosaa.io/v1alpha1",
        "kind": "GameDay",
        "metadata": {
            "name": "kind-target",
            "annotations": {TOPOLOGY_ANNOTATION: topology_annotation(topology, nodes)},
        },
        "spec": {
            "description": (
                f"Written by `chaosaa kind up`: the kind clusters of regions {names}, the "
                f"router (in {topology.hub.region}) and Prometheus. No faults: running this "
                "file only drives traffic. Copy spec.target and spec.prometheus into a "
                "GameDay, or see experiments/kind/."
            ),
            **gameday_target(topology),
        },
    }


def write_target_file(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        "# Written by `chaosaa kind up`; removed by `chaosaa kind down`.\n"
        + yaml.safe_dump(dict(document), sort_keys=False, width=100)
    )
    tmp.replace(path)
