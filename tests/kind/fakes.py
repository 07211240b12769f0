"""A recording stand-in for the docker/kind/kubectl command lines (the only seam mocked).

It answers the queries `kind up` makes the way the real tools answer them, with the
node IPs and pod CIDRs of tests/kind/helpers.fake_nodes, and records every command.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from chaosaa.kindsetup.runner import Completed, check_result
from chaosaa.kindsetup.topology import Topology
from tests.kind.helpers import fake_nodes

DOCKER_DOWN = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
    "Is the docker daemon running?"
)


@dataclass
class FakeTools:
    topology: Topology
    tools: tuple[str, ...] = ("docker", "kind", "kubectl")
    engine: bool = True
    existing_clusters: tuple[str, ...] = ()
    fail: str | None = None  # a command prefix that fails, e.g. "docker build"
    cgroup_version: str = "2"  # what `docker info` says of the engine's host
    images: tuple[str, ...] = ()  # images in the local engine (docker image inspect)
    network_containers: int = 0  # containers still on the `kind` network at `kind down`
    dry_run: bool = False
    commands: list[tuple[str, ...]] = field(default_factory=list)

    def which(self, program: str) -> str | None:
        return f"/usr/local/bin/{program}" if program in self.tools else None

    def run(self, argv: Sequence[str], *, timeout: float, check: bool = True) -> Completed:
        assert timeout > 0
        argv = tuple(argv)
        self.commands.append(argv)
        result = self._answer(argv)
        if self.fail is not None and " ".join(argv).startswith(self.fail):
            result = Completed(argv, 1, "", f"{self.fail}: simulated failure")
        return check_result(result) if check else result

    def _answer(self, argv: tuple[str, ...]) -> Completed:
        nodes = fake_nodes(self.topology)
        by_name = {n.name: n for infos in nodes.values() for n in infos}
        if argv[:2] == ("docker", "info"):
            if not self.engine:
                return Completed(argv, 1, "", DOCKER_DOWN)
            if "{{.CgroupVersion}}" in argv:
                return Completed(argv, 0, f"{self.cgroup_version}\n")
            return Completed(argv, 0, "27.3.1\n")
        if argv[:3] == ("docker", "network", "inspect"):
            return Completed(argv, 0, f"{self.network_containers}\n")
        if argv[:3] == ("docker", "image", "inspect"):
            if argv[-1] in self.images:
                return Completed(argv, 0, "sha256:0123\n")
            return Completed(argv, 1, "", f"Error response from daemon: No such image: {argv[-1]}")
        if argv[:3] == ("kind", "get", "clusters"):
            return Completed(argv, 0, "".join(f"{c}\n" for c in self.existing_clusters))
        if argv[:2] == ("docker", "inspect"):
            names = [a for a in argv[2:] if a in by_name]
            return Completed(argv, 0, "".join(f"{by_name[n].ip}\n" for n in names))
        if argv[0] == "kubectl" and "get" in argv and "nodes" in argv:
            context = argv[argv.index("--context") + 1]
            region = next(rc.region for rc in self.topology.regions if rc.context == context)
            lines = [f"{n.name} {n.pod_cidr}" for n in nodes[region]]
            return Completed(argv, 0, "\n".join(lines) + "\n")
        return Completed(argv, 0)


class FakeHTTP:
    """The host's view of the deployed demo: every endpoint answers, everything is up."""

    def __init__(self, targets: int) -> None:
        self.targets = targets
        self.urls: list[str] = []

    def __call__(self, url: str, timeout: float) -> tuple[int, bytes] | None:
        self.urls.append(url)
        if "/api/v1/query" in url:
            series = [{"metric": {}, "value": [0, "1"]} for _ in range(self.targets)]
            return 200, json.dumps({"status": "success", "data": {"result": series}}).encode()
        return 200, b"ok"
