"""What ``chaosaa kind up`` adapts in kind-configs/ for the machine it runs on.

kind-configs/ is what a user with internet gets: the pinned node image, one worker per
region. Three things may differ on a given machine, and each is applied here, in one
place, whoever runs ``kind up``:

- a local **node image** instead of the pinned digest (air-gapped machines; ours, where
  ``hack/kind-images`` builds one);
- fewer **workers** (0 or 1) to save CPU;
- a **cgroup v1** Docker host: kubelet 1.35+ refuses cgroup v1 unless its configuration
  says ``failCgroupV1: false`` (kind passes it through a kubeadm config patch).

The result is a kind config rendered next to the manifests; an unchanged config is used
from kind-configs/ as is.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from chaosaa.kindsetup.kindconfig import Cluster

#: kubeadm config patch (kind matches it to the KubeletConfiguration document).
KUBELET_CGROUP_V1_PATCH = "kind: KubeletConfiguration\nfailCgroupV1: false\n"


@dataclass(frozen=True)
class ClusterOptions:
    node_image: str | None = None
    #: keep at most this many worker nodes (None: as in the config)
    workers: int | None = None
    cgroup_v1: bool = False

    def describe(self) -> list[str]:
        """The changes, in words, for progress lines."""
        out = []
        if self.node_image:
            out.append(f"node image {self.node_image}")
        if self.workers is not None:
            out.append(f"{self.workers} worker{'s' if self.workers != 1 else ''}")
        if self.cgroup_v1:
            out.append("kubelet failCgroupV1: false (cgroup v1 host)")
        return out

    def apply(self, cluster: Cluster) -> Cluster:
        """The cluster config with these options applied (the input is not changed)."""
        update: dict[str, object] = {}
        nodes = list(cluster.nodes)
        if self.workers is not None:
            kept, workers = [], 0
            for node in nodes:
                if node.role == "worker":
                    workers += 1
                    if workers > self.workers:
                        continue
                kept.append(node)
            if len(kept) != len(nodes):
                nodes = kept
                update["nodes"] = nodes
        if self.node_image:
            update["nodes"] = [n.model_copy(update={"image": self.node_image}) for n in nodes]
        if self.cgroup_v1 and KUBELET_CGROUP_V1_PATCH not in cluster.kubeadm_config_patches:
            update["kubeadm_config_patches"] = [
                *cluster.kubeadm_config_patches,
                KUBELET_CGROUP_V1_PATCH,
            ]
        return cluster.model_copy(update=update) if update else cluster


def render_cluster(cluster: Cluster, source: str) -> str:
    """A kind config file for ``cluster``: the fields its source set, with kind's names."""
    body = cluster.model_dump(by_alias=True, exclude_unset=True, mode="json")
    # the nodes list is rebuilt whole when changed: keep every node's own set fields only
    body["nodes"] = [
        n.model_dump(by_alias=True, exclude_unset=True, mode="json") for n in cluster.nodes
    ]
    header = f"# Rendered by `chaosaa kind up` from {source}; see chaosaa/kindsetup/options.py.\n"
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)
