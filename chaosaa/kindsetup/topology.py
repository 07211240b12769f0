"""The multi-region layout on kind: regions, clusters, ports, endpoints.

One kind cluster per region, configured by ``kind-configs/<region>.yaml``. The first
region is the *hub*: it also runs the global router and Prometheus. Host ports come from
the configs' ``extraPortMappings`` (the single source); the NodePorts and the image are
fixed here and used by the manifests in ``deploy/manifests/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from chaosaa.kindsetup.kindconfig import (
    Cluster,
    KindConfigError,
    cross_region_problems,
    load_cluster,
)
from chaosaa.kindsetup.options import ClusterOptions

DEFAULT_REGIONS: tuple[str, ...] = ("us", "eu", "ap")
CONFIG_DIR = "kind-configs"
NAMESPACE = "chaosaa-demo"
#: the demo image, built from deploy/Dockerfile and loaded into every cluster; never
#: pulled (imagePullPolicy: Never), so a missing `kind load` fails loudly.
IMAGE = "chaosaa-demo:kind"
#: the port the demo node and router listen on inside their pods.
APP_PORT = 8080
PROMETHEUS_PORT = 9090

#: NodePorts, identical in every cluster. Client traffic (router and host -> a region's
#: node), replication traffic (node -> node) and scrapes use different NodePorts of the
#: same pod, so the kind target can cut or slow replication without touching clients, and
#: leave monitoring alone (as in the lab, where Prometheus is outside every fault).
CLIENT_NODE_PORT = 30080
REPLICATION_NODE_PORT = 30081
METRICS_NODE_PORT = 30082
ROUTER_NODE_PORT = 30090
PROMETHEUS_NODE_PORT = 30900


@dataclass(frozen=True)
class RegionCluster:
    """One region's kind cluster: its config in kind-configs/ and this machine's options."""

    region: str
    config_path: Path
    source: Cluster
    options: ClusterOptions = field(default_factory=ClusterOptions)

    @property
    def config(self) -> Cluster:
        """The config ``kind create cluster`` gets: the source with the options applied."""
        return self.options.apply(self.source)

    @property
    def rendered(self) -> bool:
        """True when the options change the config (it is then written out for kind)."""
        return self.config is not self.source

    @property
    def cluster(self) -> str:
        return self.config.name

    @property
    def context(self) -> str:
        """The kube context `kind create cluster` writes."""
        return f"kind-{self.cluster}"

    @property
    def node_names(self) -> list[str]:
        return self.config.node_names()

    @property
    def pod_subnet(self) -> str:
        return self.config.networking.pod_subnet

    @property
    def service_subnet(self) -> str:
        return self.config.networking.service_subnet

    @property
    def api_server_port(self) -> int:
        return self.config.networking.api_server_port

    def host_url(self, node_port: int) -> str:
        """http://127.0.0.1:<host port> for a NodePort mapped to the host."""
        mapping = self.config.host_ports().get(node_port)
        if mapping is None:
            raise KindConfigError(
                f"{self.config_path}: no extraPortMappings entry for containerPort {node_port}"
            )
        return f"http://{mapping.listen_address or '127.0.0.1'}:{mapping.host_port}"

    @property
    def endpoint(self) -> str:
        """The region's client endpoint on the host (its demo node, NodePort 30080)."""
        return self.host_url(CLIENT_NODE_PORT)

    @property
    def host_ports(self) -> list[int]:
        """Every host port this cluster binds (API server + port mappings)."""
        mapped = [pm.host_port for pm in self.config.host_ports().values() if pm.host_port > 0]
        return [self.api_server_port, *mapped]


@dataclass(frozen=True)
class Topology:
    regions: tuple[RegionCluster, ...]

    @property
    def hub(self) -> RegionCluster:
        return self.regions[0]

    @property
    def names(self) -> list[str]:
        return [r.region for r in self.regions]

    def region(self, name: str) -> RegionCluster:
        return next(r for r in self.regions if r.region == name)

    def with_options(self, options: ClusterOptions) -> Topology:
        return Topology(tuple(replace(rc, options=options) for rc in self.regions))

    @property
    def router_url(self) -> str:
        return self.hub.host_url(ROUTER_NODE_PORT)

    @property
    def prometheus_url(self) -> str:
        return self.hub.host_url(PROMETHEUS_NODE_PORT)


def load_topology(
    root: Path,
    regions: Sequence[str] = DEFAULT_REGIONS,
    options: ClusterOptions | None = None,
) -> Topology:
    """Read ``kind-configs/<region>.yaml`` for each region and check them together.

    The checks apply to the configs as written; ``options`` (a local node image, fewer
    workers) are applied on top. Raises KindConfigError (exit 2) naming every problem;
    touches nothing.
    """
    if len(regions) < 2 or len(set(regions)) != len(regions):
        raise KindConfigError(f"need at least two distinct regions, got {list(regions)}")
    paths = {r: root / CONFIG_DIR / f"{r}.yaml" for r in regions}
    clusters = {r: load_cluster(p) for r, p in paths.items()}
    problems = cross_region_problems(clusters, {r: str(p) for r, p in paths.items()})
    topo = Topology(
        tuple(RegionCluster(r, paths[r], clusters[r], options or ClusterOptions()) for r in regions)
    )
    for rc in topo.regions:
        for port in (CLIENT_NODE_PORT,) + (
            (ROUTER_NODE_PORT, PROMETHEUS_NODE_PORT) if rc is topo.hub else ()
        ):
            if port not in rc.config.host_ports():
                problems.append(
                    f"{rc.config_path}: extraPortMappings: map containerPort {port} to the host"
                )
    if problems:
        raise KindConfigError("\n".join(problems))
    return topo
