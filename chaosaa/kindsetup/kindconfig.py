"""kind cluster configs: kind's v1alpha4 schema, and the rules chaosaa adds across regions.

The models mirror ``sigs.k8s.io/kind/pkg/apis/config/v1alpha4/types.go`` of the pinned
kind release (:data:`KIND_VERSION`) field for field, with kind's YAML names, and reject
unknown fields as kind's strict decoder does. On top of kind's own checks,
:func:`cross_region_problems` enforces what the multi-cluster setup needs: disjoint pod and
service subnets (they are routed between clusters), nothing overlapping Docker's default
bridge or kind's default subnets, distinct host ports, region and zone labels.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chaosaa.errors import InvalidInputError

#: kind release the configs are written and checked against (the CI installs this one).
KIND_VERSION = "v0.33.0"
#: that release's default node image (pkg/apis/config/defaults/image.go), pinned by digest.
NODE_IMAGE = (
    "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5"
)
API_VERSION = "kind.x-k8s.io/v1alpha4"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"

#: kind's cluster-name rule (pkg/internal/apis/config/validate.go).
CLUSTER_NAME_RE = re.compile(r"^[a-z0-9.-]+$")
#: subnets a region's pod/service subnet must not overlap: Docker's default bridge and
#: default address pools (where the `kind` network itself comes from), and kind's own
#: defaults (so a user's default kind cluster can run beside ours).
RESERVED_SUBNETS: Mapping[str, str] = {
    "172.17.0.0/16": "Docker's default bridge (docker0)",
    "172.16.0.0/12": "Docker's default address pools (the `kind` network)",
    "192.168.0.0/16": "Docker's default address pools",
    "10.244.0.0/16": "kind's default pod subnet",
    "10.96.0.0/16": "kind's default service subnet",
    "127.0.0.0/8": "loopback",
}


class KindConfigError(InvalidInputError):
    """A kind config under kind-configs/ is invalid or inconsistent with the others."""


class _Strict(BaseModel):
    # kind decodes with KnownFields(true): an unknown or misspelt field is an error.
    model_config = ConfigDict(extra="forbid", frozen=True)


Port = Annotated[int, Field(ge=-1, le=65535)]


class PortMapping(_Strict):
    container_port: Port = Field(0, alias="containerPort")
    host_port: Port = Field(0, alias="hostPort")
    listen_address: str = Field("", alias="listenAddress")
    protocol: Literal["TCP", "UDP", "SCTP", ""] = "TCP"


class Mount(_Strict):
    container_path: str = Field("", alias="containerPath")
    host_path: str = Field("", alias="hostPath")
    read_only: bool = Field(False, alias="readOnly")
    selinux_relabel: bool = Field(False, alias="selinuxRelabel")
    propagation: Literal["None", "HostToContainer", "Bidirectional", ""] = ""


class PatchJSON6902(_Strict):
    group: str
    version: str
    kind: str
    patch: str


class Node(_Strict):
    role: Literal["control-plane", "worker"] = "control-plane"
    image: str = NODE_IMAGE
    labels: dict[str, str] = Field(default_factory=dict)
    extra_mounts: list[Mount] = Field(default_factory=list, alias="extraMounts")
    extra_port_mappings: list[PortMapping] = Field(default_factory=list, alias="extraPortMappings")
    kubeadm_config_patches: list[str] = Field(default_factory=list, alias="kubeadmConfigPatches")
    kubeadm_config_patches_json6902: list[PatchJSON6902] = Field(
        default_factory=list, alias="kubeadmConfigPatchesJSON6902"
    )


class Networking(_Strict):
    ip_family: Literal["ipv4", "ipv6", "dual"] = Field("ipv4", alias="ipFamily")
    api_server_port: Port = Field(0, alias="apiServerPort")
    api_server_address: str = Field("127.0.0.1", alias="apiServerAddress")
    pod_subnet: str = Field("10.244.0.0/16", alias="podSubnet")
    service_subnet: str = Field("10.96.0.0/16", alias="serviceSubnet")
    disable_default_cni: bool = Field(False, alias="disableDefaultCNI")
    kube_proxy_mode: Literal["iptables", "ipvs", "nftables", "none"] = Field(
        "iptables", alias="kubeProxyMode"
    )
    dns_search: list[str] | None = Field(None, alias="dnsSearch")


class Cluster(_Strict):
    kind: Literal["Cluster"]
    api_version: Literal["kind.x-k8s.io/v1alpha4"] = Field(alias="apiVersion")
    name: str = ""
    nodes: list[Node] = Field(default_factory=lambda: [Node()])
    networking: Networking = Field(default_factory=Networking)
    feature_gates: dict[str, bool] = Field(default_factory=dict, alias="featureGates")
    runtime_config: dict[str, str] = Field(default_factory=dict, alias="runtimeConfig")
    kubeadm_config_patches: list[str] = Field(default_factory=list, alias="kubeadmConfigPatches")
    kubeadm_config_patches_json6902: list[PatchJSON6902] = Field(
        default_factory=list, alias="kubeadmConfigPatchesJSON6902"
    )
    containerd_config_patches: list[str] = Field(
        default_factory=list, alias="containerdConfigPatches"
    )
    containerd_config_patches_json6902: list[str] = Field(
        default_factory=list, alias="containerdConfigPatchesJSON6902"
    )

    def node_names(self) -> list[str]:
        """Node container names, as kind's namer makes them (``<cluster>-worker2``)."""
        counts: dict[str, int] = {}
        names = []
        for node in self.nodes:
            counts[node.role] = counts.get(node.role, 0) + 1
            n = counts[node.role]
            names.append(f"{self.name}-{node.role}{n if n > 1 else ''}")
        return names

    def host_ports(self) -> dict[int, PortMapping]:
        """containerPort -> mapping, over every node's extraPortMappings."""
        return {pm.container_port: pm for n in self.nodes for pm in n.extra_port_mappings}


def _fmt_loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_cluster(text: str, source: str) -> Cluster:
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KindConfigError(f"{source}: YAML error: {exc}") from None
    if not isinstance(data, dict):
        raise KindConfigError(f"{source}: expected a kind Cluster mapping")
    try:
        return Cluster.model_validate(data)
    except ValidationError as exc:
        problems = [f"{source}: {_fmt_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise KindConfigError("\n".join(problems)) from None


def load_cluster(path: Path) -> Cluster:
    try:
        text = path.read_text()
    except OSError as exc:
        raise KindConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_cluster(text, str(path))


def kind_problems(cluster: Cluster, source: str) -> list[str]:
    """The checks of kind's ``Cluster.Validate()`` that a field schema cannot express."""
    out: list[str] = []
    net = cluster.networking
    if not CLUSTER_NAME_RE.match(cluster.name):
        out.append(f"{source}: name: {cluster.name!r} must match {CLUSTER_NAME_RE.pattern}")
    for field, value in (("podSubnet", net.pod_subnet), ("serviceSubnet", net.service_subnet)):
        try:
            ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            out.append(f"{source}: networking.{field}: {exc}")
    if not any(n.role == "control-plane" for n in cluster.nodes):
        out.append(f"{source}: nodes: must have at least one control-plane node")
    for i, node in enumerate(cluster.nodes):
        seen: set[tuple[int, str, str]] = set()
        for pm in node.extra_port_mappings:
            key = (pm.host_port, pm.listen_address or "0.0.0.0", pm.protocol)
            if pm.host_port > 0 and key in seen:
                out.append(f"{source}: nodes[{i}].extraPortMappings: duplicate {key}")
            seen.add(key)
    return out


def cross_region_problems(clusters: Mapping[str, Cluster], sources: Mapping[str, str]) -> list[str]:
    """What the multi-region setup needs beyond valid kind configs (region -> cluster)."""
    out: list[str] = []
    subnets: list[tuple[str, str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    host_ports: dict[tuple[str, int], str] = {}
    names: dict[str, str] = {}
    for region, c in clusters.items():
        src = sources[region]
        out += kind_problems(c, src)
        if c.name in names:
            out.append(f"{src}: name: {c.name!r} is also the cluster of region {names[c.name]}")
        names[c.name] = region
        net = c.networking
        if net.ip_family != "ipv4":
            out.append(f"{src}: networking.ipFamily: the demo's routes are IPv4; use ipv4")
        if net.api_server_address != "127.0.0.1":
            out.append(f"{src}: networking.apiServerAddress: must be 127.0.0.1 (host only)")
        if net.api_server_port <= 0:
            out.append(f"{src}: networking.apiServerPort: set a fixed port (distinct per region)")
        if net.disable_default_cni:
            out.append(f"{src}: networking.disableDefaultCNI: the setup relies on kindnet")
        for field, value in (("podSubnet", net.pod_subnet), ("serviceSubnet", net.service_subnet)):
            with contextlib.suppress(ValueError):  # reported by kind_problems
                subnets.append((f"{src}: networking.{field}", value, ipaddress.ip_network(value)))
        ports = [("networking.apiServerPort", net.api_server_port)] + [
            (f"nodes[{i}].extraPortMappings", pm.host_port)
            for i, n in enumerate(c.nodes)
            for pm in n.extra_port_mappings
        ]
        for where, port in ports:
            if port <= 0:
                continue
            key = ("127.0.0.1", port)
            if key in host_ports:
                out.append(f"{src}: {where}: host port {port} is also used by {host_ports[key]}")
            host_ports[key] = f"{src}: {where}"
        for i, node in enumerate(c.nodes):
            if node.labels.get(REGION_LABEL) != region:
                out.append(f"{src}: nodes[{i}].labels: {REGION_LABEL} must be {region!r}")
            if not node.labels.get(ZONE_LABEL, "").startswith(f"{region}-"):
                out.append(f"{src}: nodes[{i}].labels: {ZONE_LABEL} must start with '{region}-'")
            if "@sha256:" not in node.image:
                out.append(f"{src}: nodes[{i}].image: pin the node image by digest")
            for pm in node.extra_port_mappings:
                if pm.listen_address != "127.0.0.1":
                    out.append(
                        f"{src}: nodes[{i}].extraPortMappings: containerPort {pm.container_port} "
                        "must listen on 127.0.0.1 only"
                    )
    for i, (where, text, net_a) in enumerate(subnets):
        for reserved, what in RESERVED_SUBNETS.items():
            if net_a.overlaps(ipaddress.ip_network(reserved)):
                out.append(f"{where}: {text} overlaps {reserved} ({what})")
        for where_b, text_b, net_b in subnets[i + 1 :]:
            if net_a.overlaps(net_b):
                out.append(f"{where}: {text} overlaps {text_b} ({where_b})")
    return out
