"""``chaosaa kind up|down``: the command sequence, with a preflight that touches nothing.

``up``: preflight (Docker engine, kind, kubectl, no clusters of ours yet, host ports free,
a local node image present) → ``kind create cluster`` per region (with the config of
kind-configs/, or one rendered with this machine's options: see :mod:`.options`) →
``docker build`` the demo image → ``kind load docker-image`` into every cluster →
discover node IPs (``docker inspect``) and pod CIDRs (``kubectl get nodes``) → ``ip route
replace`` in every node container towards every other cluster's pod CIDRs → render and
``kubectl apply`` the manifests → ``kubectl rollout status`` and HTTP readiness from the
host → write the target file.

``down``: preflight (Docker engine, kind) → disarm the kind target's host watchdogs →
``kind delete cluster`` per region → remove the docker network once unused, the target
file and the rendered manifests.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chaosaa.errors import ChaosaaError, EnvironmentError_
from chaosaa.kindsetup.kindconfig import KIND_VERSION
from chaosaa.kindsetup.manifests import DATA_HOST_DIR, DATA_UID, data_node, render_region
from chaosaa.kindsetup.options import render_cluster
from chaosaa.kindsetup.runner import CommandError, Completed, Runner
from chaosaa.kindsetup.targetfile import (
    TARGET_FILE,
    NodeInfo,
    target_document,
    write_target_file,
)
from chaosaa.kindsetup.topology import IMAGE, NAMESPACE, RegionCluster, Topology
from chaosaa.rules.shell import (
    disarm_all_command,
)
from chaosaa.targets.kind.nodes import host_state_dir

DOCKERFILE = Path("deploy") / "Dockerfile"
MANIFEST_SUBDIR = "kind"
INSTALL_HINTS = {
    "docker": "install Docker: https://docs.docker.com/engine/install/",
    "kind": f"install kind {KIND_VERSION}: go install sigs.k8s.io/kind@{KIND_VERSION}",
    "kubectl": "install kubectl: https://kubernetes.io/docs/tasks/tools/",
}


class PreflightError(EnvironmentError_):
    """The machine cannot run the kind setup; nothing was touched (exit 4)."""


class KindSetupError(EnvironmentError_):
    """A step of ``kind up`` failed after clusters were created (exit 4)."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds per command; creating a cluster includes pulling the node image."""

    preflight: float = 20.0
    quick: float = 60.0
    create: float = 600.0
    build: float = 900.0
    load: float = 300.0
    delete: float = 180.0
    rollout: float = 300.0
    ready: float = 180.0


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def http_get(url: str, timeout: float) -> tuple[int, bytes] | None:
    """GET from the host, never through a proxy; None when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, OSError, TimeoutError):
        return None


@dataclass
class KindSetup:
    root: Path
    topology: Topology
    runner: Runner
    state_dir: Path
    progress: Callable[[str], None] = lambda _msg: None
    port_in_use: Callable[[str, int], bool] = port_in_use
    http_get: Callable[[str, float], tuple[int, bytes] | None] = http_get
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    timeouts: Timeouts = field(default_factory=Timeouts)
    image: str = IMAGE
    #: the image deploy/Dockerfile builds on (its BASE_IMAGE build argument); None: its default
    base_image: str | None = None
    #: where the kind target's host-side watchdogs keep their files (``down`` disarms them)
    watchdog_dir: str = field(default_factory=host_state_dir)
    #: docker network kind puts the nodes on (kind honours the same variable)
    network: str = field(
        default_factory=lambda: os.environ.get("KIND_EXPERIMENTAL_DOCKER_NETWORK", "kind")
    )

    @property
    def target_path(self) -> Path:
        return self.state_dir / TARGET_FILE

    @property
    def manifest_dir(self) -> Path:
        return self.state_dir / MANIFEST_SUBDIR

    # -- preflight ------------------------------------------------------------------

    def preflight(self, *, up: bool) -> None:
        """Check tools, the Docker engine, existing clusters and ports; touch nothing.

        Every problem is reported at once, each with what to do about it.
        """
        problems: list[str] = []
        tools = ("docker", "kind", "kubectl") if up else ("docker", "kind")
        absent = {t for t in tools if self.runner.which(t) is None}
        problems += [f"`{t}` not found on PATH ({INSTALL_HINTS[t]})" for t in sorted(absent)]
        engine = False
        if "docker" not in absent:
            info = self._query(["docker", "info", "--format", "{{.ServerVersion}}"])
            engine = info.ok
            if not engine:
                problems.append(
                    "Docker engine not running: `docker info` failed"
                    + (f" ({info.tail(2)})" if info.tail(2) else "")
                    + "; start Docker (kind runs every node as a container) and retry"
                )
        if up and engine:
            problems += self._check_engine_for_nodes()
        existing: set[str] = set()
        if up and engine and "kind" not in absent:
            listed = self._query(["kind", "get", "clusters"])
            existing = set(listed.stdout.split()) & {rc.cluster for rc in self.topology.regions}
            if existing:
                problems.append(
                    f"kind cluster(s) {', '.join(sorted(existing))} already exist: "
                    "run `chaosaa kind down` first"
                )
        if up and not self.runner.dry_run:
            for rc in self.topology.regions:
                if rc.cluster in existing:
                    continue
                for port in rc.host_ports:
                    if self.port_in_use("127.0.0.1", port):
                        problems.append(
                            f"host port 127.0.0.1:{port} (cluster {rc.cluster}, "
                            f"{rc.config_path}) is already in use"
                        )
        if problems:
            raise PreflightError(
                "cannot run the kind setup; nothing was changed:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )

    def _check_engine_for_nodes(self) -> list[str]:
        """A cgroup v1 host adapts the configs; a local node image must be there."""
        cgroup = self._query(["docker", "info", "--format", "{{.CgroupVersion}}"])
        options = self.topology.hub.options
        if cgroup.ok and cgroup.stdout.strip() == "1" and not options.cgroup_v1:
            self.topology = self.topology.with_options(replace(options, cgroup_v1=True))
        image = options.node_image
        if not image:
            return []
        found = self._query(["docker", "image", "inspect", "--format", "{{.Id}}", image])
        if found.ok or self.runner.dry_run:
            return []
        return [
            f"node image {image} is not in the local Docker engine "
            "(build it with `make kind-images`, or `docker pull` it)"
        ]

    def _query(self, argv: list[str]) -> Completed:
        """A read-only preflight command; a hang or a missing binary is a failed result."""
        try:
            return self.runner.run(argv, timeout=self.timeouts.preflight, check=False)
        except CommandError as exc:
            return Completed(tuple(argv), -1, "", str(exc))

    # -- up -------------------------------------------------------------------------

    def up(self) -> Path:
        """Create, build, load, route, deploy, wait, and write the target file."""
        self.preflight(up=True)
        try:
            self.create_clusters()
            self.build_image()
            self.load_image()
            nodes = self.discover_nodes()
            self.add_routes(nodes)
            self.make_data_dirs()
            self.deploy(nodes)
            self.wait_ready()
        except ChaosaaError as exc:
            raise KindSetupError(
                f"{exc}\nThe clusters are left in place for inspection "
                "(kubectl --context kind-<cluster> ...); `chaosaa kind down` removes them."
            ) from exc
        return self.write_target(nodes)

    def _run(self, argv: Sequence[str], timeout: float) -> Completed:
        return self.runner.run(argv, timeout=timeout)

    def cluster_config_path(self, rc: RegionCluster) -> Path:
        """The kind config of a region: kind-configs/ as is, or rendered with the options."""
        if not rc.rendered:
            return rc.config_path
        return self.manifest_dir / f"{rc.region}-cluster.yaml"

    def create_clusters(self) -> None:
        for rc in self.topology.regions:
            path = self.cluster_config_path(rc)
            changes = "; ".join(rc.options.describe()) if rc.rendered else ""
            self.progress(
                f"creating kind cluster {rc.cluster} (region {rc.region})"
                + (f" with {changes}" if changes else "")
            )
            if rc.rendered and not self.runner.dry_run:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(render_cluster(rc.config, str(rc.config_path)))
            self._run(
                ["kind", "create", "cluster", "--config", str(path), "--wait", "120s"],
                self.timeouts.create,
            )

    def build_image(self) -> None:
        base = f" on {self.base_image}" if self.base_image else ""
        self.progress(f"building the demo image {self.image}{base}")
        build_args = ["--build-arg", f"BASE_IMAGE={self.base_image}"] if self.base_image else []
        self._run(
            [
                "docker",
                "build",
                "--file",
                str(self.root / DOCKERFILE),
                *build_args,
                "--tag",
                self.image,
                str(self.root),
            ],
            self.timeouts.build,
        )

    def load_image(self) -> None:
        for rc in self.topology.regions:
            self.progress(f"loading {self.image} into {rc.cluster}")
            self._run(
                ["kind", "load", "docker-image", self.image, "--name", rc.cluster],
                self.timeouts.load,
            )

    def discover_nodes(self) -> dict[str, list[NodeInfo]]:
        """Each node container's IP on the kind network and its pod CIDR."""
        self.progress("discovering node IPs and pod CIDRs")
        out: dict[str, list[NodeInfo]] = {}
        for rc in self.topology.regions:
            ips = self._node_ips(rc)
            cidrs = self._pod_cidrs(rc)
            out[rc.region] = [
                NodeInfo(name, ip, cidrs.get(name, ""))
                for name, ip in zip(rc.node_names, ips, strict=True)
            ]
            if not self.runner.dry_run:
                self._check_nodes(rc, out[rc.region])
        return out

    def _node_ips(self, rc: RegionCluster) -> list[str]:
        network = f'index .NetworkSettings.Networks "{self.network}"'
        fmt = f"{{{{with {network}}}}}{{{{.IPAddress}}}}{{{{end}}}}"
        result = self._run(
            ["docker", "inspect", "--format", fmt, *rc.node_names], self.timeouts.quick
        )
        if self.runner.dry_run:
            return [f"<IP of {n}>" for n in rc.node_names]
        return [line.strip() for line in result.stdout.splitlines() if line.strip()]

    def _pod_cidrs(self, rc: RegionCluster) -> dict[str, str]:
        jsonpath = '{range .items[*]}{.metadata.name}{" "}{.spec.podCIDR}{"\\n"}{end}'
        result = self._run(
            ["kubectl", "--context", rc.context, "get", "nodes", "-o", f"jsonpath={jsonpath}"],
            self.timeouts.quick,
        )
        if self.runner.dry_run:
            return {n: f"<podCIDR of {n}>" for n in rc.node_names}
        pairs = (line.split() for line in result.stdout.splitlines())
        return {p[0]: p[1] for p in pairs if len(p) == 2}

    def _check_nodes(self, rc: RegionCluster, nodes: list[NodeInfo]) -> None:
        subnet = ipaddress.ip_network(rc.pod_subnet)
        for node in nodes:
            try:
                ipaddress.ip_address(node.ip)
                cidr = ipaddress.ip_network(node.pod_cidr)
            except ValueError:
                raise KindSetupError(
                    f"{rc.cluster}: node {node.name}: no usable IP on docker network "
                    f"{self.network!r} ({node.ip!r}) or pod CIDR ({node.pod_cidr!r})"
                ) from None
            if not cidr.subnet_of(subnet):  # type: ignore[arg-type]
                raise KindSetupError(
                    f"{rc.cluster}: node {node.name}: pod CIDR {cidr} is outside {subnet}"
                )

    def add_routes(self, nodes: dict[str, list[NodeInfo]]) -> None:
        """Route every other cluster's per-node pod CIDRs via that node's IP.

        kindnet routes pod CIDRs between the nodes of one cluster only; these routes make
        pods of different clusters reachable from each other over the ``kind`` network.
        ``replace`` keeps it idempotent.
        """
        self.progress("adding cross-cluster pod routes")
        for rc in self.topology.regions:
            for node in nodes[rc.region]:
                for other in self.topology.regions:
                    if other is rc:
                        continue
                    for remote in nodes[other.region]:
                        self._run(
                            [
                                "docker",
                                "exec",
                                node.name,
                                "ip",
                                "route",
                                "replace",
                                remote.pod_cidr,
                                "via",
                                remote.ip,
                            ],
                            self.timeouts.quick,
                        )

    def make_data_dirs(self) -> None:
        """The demo node's data directory on the node its pod is pinned to, owned by the
        pod's user (a hostPath: acknowledged writes outlive the pod). Idempotent."""
        for rc in self.topology.regions:
            node = data_node(self.topology, rc.region)
            self.progress(f"making the demo data directory {node}:{DATA_HOST_DIR}")
            owner = str(DATA_UID)
            self._run(
                ["docker", "exec", node, "install", "-d", "-m", "0700", "-o", owner, "-g", owner,
                 DATA_HOST_DIR],
                self.timeouts.quick,
            )  # fmt: skip

    def deploy(self, nodes: dict[str, list[NodeInfo]]) -> None:
        node_ips = {region: infos[0].ip for region, infos in nodes.items()}
        if not self.runner.dry_run:
            self.manifest_dir.mkdir(parents=True, exist_ok=True)
        for rc in self.topology.regions:
            rendered = render_region(self.root, self.topology, rc.region, node_ips, self.image)
            path = self.manifest_dir / f"{rc.region}.yaml"
            kinds = ", ".join(f"{k}/{n}" for k, n in rendered.objects())
            self.progress(f"deploying to {rc.cluster}: {kinds}")
            if not self.runner.dry_run:
                path.write_text(rendered.yaml())
            self._run(
                ["kubectl", "--context", rc.context, "apply", "-f", str(path)], self.timeouts.quick
            )

    def deployments(self, rc: RegionCluster) -> list[str]:
        names = ["chaosaa-node"]
        if rc is self.topology.hub:
            names += ["chaosaa-router", "chaosaa-prometheus"]
        return names

    def wait_ready(self) -> None:
        for rc in self.topology.regions:
            for name in self.deployments(rc):
                self.progress(f"waiting for {rc.cluster} deployment/{name}")
                self._run(
                    [
                        "kubectl",
                        "--context",
                        rc.context,
                        "--namespace",
                        NAMESPACE,
                        "rollout",
                        "status",
                        f"deployment/{name}",
                        "--timeout",
                        f"{self.timeouts.rollout:.0f}s",
                    ],
                    self.timeouts.rollout + 30,
                )
        if self.runner.dry_run:
            self.progress("then: wait until the endpoints answer and Prometheus scrapes all")
            return
        checks = [
            (f"{rc.region} endpoint", f"{rc.endpoint}/healthz") for rc in self.topology.regions
        ]
        checks += [
            ("router", f"{self.topology.router_url}/healthz"),
            ("Prometheus", f"{self.topology.prometheus_url}/-/ready"),
        ]
        deadline = self.clock() + self.timeouts.ready
        for name, url in checks:
            self.progress(f"waiting for the {name} at {url}")
            self._wait_http(name, url, deadline)
        self.progress("waiting until Prometheus scrapes every region and the router")
        self._wait_scrapes(deadline)

    def _wait_http(self, name: str, url: str, deadline: float) -> None:
        last = "no answer"
        while True:
            got = self.http_get(url, 2.0)
            if got is not None and got[0] == 200:
                return
            last = f"HTTP {got[0]}" if got is not None else "no answer"
            if self.clock() >= deadline:
                raise KindSetupError(f"the {name} at {url} is not ready ({last})")
            self.sleep(1.0)

    def _wait_scrapes(self, deadline: float) -> None:
        url = f"{self.topology.prometheus_url}/api/v1/query?query=up"
        want = len(self.topology.regions) + 2  # nodes, router, Prometheus itself

        def judge(answer: Any) -> str | None:
            up = [s for s in answer["data"]["result"] if s["value"][1] == "1"]
            return None if len(up) >= want else f"{len(up)}/{want} targets up"

        status = self.poll_json(url, deadline, judge)
        if status is not None:
            raise KindSetupError(f"Prometheus does not scrape everything yet ({status})")

    def poll_json(
        self, url: str, deadline: float, judge: Callable[[Any], str | None]
    ) -> str | None:
        """GET ``url`` every second until ``judge`` (given the JSON answer) returns None;
        past ``deadline``, the last reason it gave (or why there was no answer)."""
        status = "no answer"
        while True:
            got = self.http_get(url, 2.0)
            if got is not None and got[0] == 200:
                try:
                    reason = judge(json.loads(got[1]))
                except (ValueError, KeyError, TypeError, IndexError):
                    reason = "unexpected answer"
                if reason is None:
                    return None
                status = reason
            if self.clock() >= deadline:
                return status
            self.sleep(1.0)

    def write_target(self, nodes: dict[str, list[NodeInfo]]) -> Path:
        if self.runner.dry_run:
            self.progress(f"then: write {self.target_path}")
            return self.target_path
        write_target_file(self.target_path, target_document(self.topology, nodes))
        self.progress(f"wrote {self.target_path}")
        return self.target_path

    # -- down -----------------------------------------------------------------------

    def remove_network_if_unused(self) -> None:
        """Remove the docker network kind created, once no container is attached to it.

        kind creates the network on first use and never deletes it; with other kind
        clusters (or anything else) still on it, it stays.
        """
        fmt = "{{len .Containers}}"
        found = self._query(["docker", "network", "inspect", "--format", fmt, self.network])
        if self.runner.dry_run or (found.ok and found.stdout.strip() == "0"):
            self.progress(f"removing the docker network {self.network} (no container left on it)")
            self.runner.run(
                ["docker", "network", "rm", self.network], timeout=self.timeouts.quick, check=False
            )

    def down(self) -> None:
        self.preflight(up=False)
        # a killed run's regionDown watchdog would outlive the clusters until its expiry
        self.progress(f"disarming chaosaa's host watchdogs ({self.watchdog_dir})")
        self.runner.run(
            disarm_all_command(self.watchdog_dir).argv, timeout=self.timeouts.quick, check=False
        )
        for rc in self.topology.regions:
            self.progress(f"deleting kind cluster {rc.cluster}")
            self._run(["kind", "delete", "cluster", "--name", rc.cluster], self.timeouts.delete)
        self.remove_network_if_unused()
        if self.runner.dry_run:
            self.progress(f"then: remove {self.target_path} and {self.manifest_dir}")
            return
        self.target_path.unlink(missing_ok=True)
        shutil.rmtree(self.manifest_dir, ignore_errors=True)
