"""`chaosaa kind up|down`: the command sequence, recorded at the docker/kind/kubectl seam."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from chaosaa.errors import ExitCode
from chaosaa.kindsetup.manifests import render_region
from chaosaa.kindsetup.runner import DryRunRunner
from chaosaa.kindsetup.setup import KindSetup, KindSetupError, PreflightError
from chaosaa.kindsetup.targetfile import TOPOLOGY_ANNOTATION
from chaosaa.kindsetup.topology import IMAGE, Topology, load_topology
from chaosaa.spec.loader import load_gameday
from tests.kind.conftest import REPO
from tests.kind.fakes import FakeHTTP, FakeTools
from tests.kind.helpers import fake_node_ips, fake_nodes

Cmd = tuple[str, ...]


@pytest.fixture
def topology() -> Topology:
    return load_topology(REPO)


def make_setup(
    topology: Topology, tools: FakeTools, state: Path, *, busy: set[int] | None = None
) -> KindSetup:
    return KindSetup(
        root=REPO,
        topology=topology,
        runner=tools,
        state_dir=state,
        port_in_use=lambda _host, port: port in (busy or set()),
        http_get=FakeHTTP(len(topology.regions) + 2),
        sleep=lambda _s: None,
    )


def first(commands: list[Cmd], pred: Callable[[Cmd], bool]) -> int:
    return next(i for i, c in enumerate(commands) if pred(c))


def last(commands: list[Cmd], pred: Callable[[Cmd], bool]) -> int:
    return max(i for i, c in enumerate(commands) if pred(c))


def starts(*prefix: str) -> Callable[[Cmd], bool]:
    return lambda c: c[: len(prefix)] == prefix


def is_apply(c: Cmd) -> bool:
    return c[0] == "kubectl" and "apply" in c


def is_rollout(c: Cmd) -> bool:
    return c[0] == "kubectl" and "rollout" in c


def test_up_creates_builds_loads_routes_deploys_waits_in_that_order(
    topology: Topology, tmp_path: Path
) -> None:
    tools = FakeTools(topology)
    setup = make_setup(topology, tools, tmp_path / "state")
    path = setup.up()
    cmds = tools.commands

    creates = [c for c in cmds if starts("kind", "create", "cluster")(c)]
    assert creates == [
        ("kind", "create", "cluster", "--config", str(REPO / "kind-configs" / f"{r}.yaml"),
         "--wait", "120s")
        for r in ("us", "eu", "ap")
    ]  # fmt: skip
    build = ("docker", "build", "--file", str(REPO / "deploy" / "Dockerfile"), "--tag", IMAGE,
             str(REPO))  # fmt: skip
    assert build in cmds
    loads = [c for c in cmds if starts("kind", "load", "docker-image")(c)]
    assert loads == [
        ("kind", "load", "docker-image", IMAGE, "--name", f"chaosaa-{r}")
        for r in ("us", "eu", "ap")
    ]
    applies = [c for c in cmds if is_apply(c)]
    assert applies == [
        ("kubectl", "--context", f"kind-chaosaa-{r}", "apply", "-f",
         str(tmp_path / "state" / "kind" / f"{r}.yaml"))
        for r in ("us", "eu", "ap")
    ]  # fmt: skip

    # preflight, then create everything before building, build before loading, the
    # routes before the manifests that rely on them, rollout waits last.
    assert first(cmds, starts("docker", "info")) < first(cmds, starts("kind", "get", "clusters"))
    assert last(cmds, starts("kind", "get", "clusters")) < first(cmds, starts("kind", "create"))
    assert last(cmds, starts("kind", "create")) < cmds.index(build)
    assert cmds.index(build) < first(cmds, starts("kind", "load"))
    assert last(cmds, starts("kind", "load")) < first(cmds, starts("docker", "exec"))
    assert last(cmds, starts("docker", "exec")) < first(cmds, is_apply)
    assert last(cmds, is_apply) < first(cmds, is_rollout)
    assert cmds[-1][0] == "kubectl" and is_rollout(cmds[-1])
    assert path == tmp_path / "state" / "kind-target.yaml" and path.exists()


def test_up_routes_every_node_to_every_other_clusters_pod_cidrs(
    topology: Topology, tmp_path: Path
) -> None:
    tools = FakeTools(topology)
    make_setup(topology, tools, tmp_path).up()
    nodes = fake_nodes(topology)
    expected = {
        ("docker", "exec", local.name, "ip", "route", "replace", remote.pod_cidr, "via", remote.ip)
        for region, infos in nodes.items()
        for local in infos
        for other, remotes in nodes.items()
        if other != region
        for remote in remotes
    }
    routes = {c for c in tools.commands if starts("docker", "exec")(c) and c[3] == "ip"}
    assert routes == expected
    # never a route into a node's own cluster: kindnet owns those
    region_of = {n.name: r for r, infos in nodes.items() for n in infos}
    cidr_region = {n.pod_cidr: r for r, infos in nodes.items() for n in infos}
    for c in routes:
        assert region_of[c[2]] != cidr_region[c[6]], c


def test_up_makes_each_regions_data_directory_on_the_node_its_pod_is_pinned_to(
    topology: Topology, tmp_path: Path
) -> None:
    tools = FakeTools(topology)
    make_setup(topology, tools, tmp_path).up()
    made = [c for c in tools.commands if starts("docker", "exec")(c) and c[3] == "install"]
    assert made == [
        ("docker", "exec", rc.node_names[0], "install", "-d", "-m", "0700",
         "-o", "10001", "-g", "10001", "/var/lib/chaosaa-demo")
        for rc in topology.regions
    ]  # fmt: skip
    for rc in topology.regions:
        rendered = render_region(REPO, topology, rc.region, fake_node_ips(topology))
        (pod,) = [
            d["spec"]["template"]["spec"]
            for d in rendered.documents
            if d["kind"] == "Deployment" and d["metadata"]["name"] == "chaosaa-node"
        ]
        assert pod["nodeSelector"] == {"kubernetes.io/hostname": rc.node_names[0]}
        (data,) = [v for v in pod["volumes"] if v["name"] == "data"]
        assert data["hostPath"] == {"path": "/var/lib/chaosaa-demo", "type": "Directory"}


def test_up_waits_for_every_deployment_and_for_prometheus_to_scrape_everything(
    topology: Topology, tmp_path: Path
) -> None:
    tools = FakeTools(topology)
    setup = make_setup(topology, tools, tmp_path)
    setup.up()
    rollouts = {(c[2], c[c.index("status") + 1]) for c in tools.commands if is_rollout(c)}
    assert rollouts == {
        ("kind-chaosaa-us", "deployment/chaosaa-node"),
        ("kind-chaosaa-us", "deployment/chaosaa-router"),
        ("kind-chaosaa-us", "deployment/chaosaa-prometheus"),
        ("kind-chaosaa-eu", "deployment/chaosaa-node"),
        ("kind-chaosaa-ap", "deployment/chaosaa-node"),
    }
    urls = setup.http_get.urls  # type: ignore[attr-defined]
    for rc in topology.regions:
        assert f"{rc.endpoint}/healthz" in urls
    assert f"{topology.router_url}/healthz" in urls
    assert urls[-1].startswith(f"{topology.prometheus_url}/api/v1/query")


def test_up_writes_the_manifests_it_applies(topology: Topology, tmp_path: Path) -> None:
    make_setup(topology, FakeTools(topology), tmp_path).up()
    us = list(yaml.safe_load_all((tmp_path / "kind" / "us.yaml").read_text()))
    eu_ip = fake_nodes(topology)["eu"][0].ip
    node_cm = next(
        d for d in us if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "chaosaa-node"
    )
    assert json.loads(node_cm["data"]["node.json"])["peers"]["eu"] == f"http://{eu_ip}:30081"


def test_the_target_file_is_a_valid_gameday_describing_the_clusters(
    topology: Topology, tmp_path: Path
) -> None:
    path = make_setup(topology, FakeTools(topology), tmp_path).up()
    gameday = load_gameday(path)
    target = gameday.spec.target
    assert target.kind == "kind"
    assert target.url == "http://127.0.0.1:20080"
    assert gameday.spec.prometheus.url == "http://127.0.0.1:20090"
    assert {r: (t.cluster, t.endpoint) for r, t in target.regions.items()} == {
        "us": ("chaosaa-us", "http://127.0.0.1:21080"),
        "eu": ("chaosaa-eu", "http://127.0.0.1:22080"),
        "ap": ("chaosaa-ap", "http://127.0.0.1:23080"),
    }
    topo = json.loads(gameday.metadata.annotations[TOPOLOGY_ANNOTATION])
    assert topo["hub"] == "us"
    assert topo["nodePorts"]["replication"] == 30081
    eu = topo["regions"]["eu"]
    assert eu["context"] == "kind-chaosaa-eu" and eu["podSubnet"] == "10.20.0.0/16"
    assert [n["ip"] for n in eu["nodes"]] == [n.ip for n in fake_nodes(topology)["eu"]]


def test_chaosaa_validate_accepts_the_target_file(topology: Topology, tmp_path: Path) -> None:
    path = make_setup(topology, FakeTools(topology), tmp_path).up()
    proc = subprocess.run(
        [sys.executable, "-m", "chaosaa.cli.main", "validate", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "valid (kind-target: 0 faults, 0 SLOs)" in proc.stdout


def test_kind_experiments_target_exactly_what_kind_up_writes(
    topology: Topology, tmp_path: Path
) -> None:
    written = load_gameday(make_setup(topology, FakeTools(topology), tmp_path).up())
    experiments = sorted((REPO / "experiments" / "kind").glob("*.yaml"))
    assert {p.stem for p in experiments} == {
        "region-down", "region-blackhole", "latency", "replication-lag", "split-brain"
    }  # fmt: skip
    for path in experiments:
        gameday = load_gameday(path)
        assert gameday.spec.target == written.spec.target, path
        assert gameday.spec.prometheus.url == written.spec.prometheus.url, path


@pytest.mark.parametrize(
    ("tools_kw", "busy", "message"),
    [
        ({"engine": False}, set(), "Docker engine not running"),
        ({"tools": ("docker", "kubectl")}, set(), "`kind` not found on PATH"),
        ({"tools": ("docker", "kind")}, set(), "`kubectl` not found on PATH"),
        ({"existing_clusters": ("chaosaa-eu",)}, set(), "chaosaa-eu already exist"),
        ({}, {22080}, "host port 127.0.0.1:22080"),
        ({}, {21443}, "host port 127.0.0.1:21443"),
    ],
)
def test_up_preflight_failure_touches_nothing(
    topology: Topology, tmp_path: Path, tools_kw: dict[str, object], busy: set[int], message: str
) -> None:
    tools = FakeTools(topology, **tools_kw)  # type: ignore[arg-type]
    state = tmp_path / "state"
    with pytest.raises(PreflightError, match=message) as info:
        make_setup(topology, tools, state, busy=busy).up()
    assert info.value.exit_code == ExitCode.ENVIRONMENT
    assert int(info.value.exit_code) == 4
    assert "nothing was changed" in str(info.value)
    # only read-only queries ran, and no file was written
    assert {c[:3] for c in tools.commands} <= {
        ("docker", "info", "--format"), ("kind", "get", "clusters")
    }  # fmt: skip
    assert not state.exists()


def test_preflight_reports_every_problem_at_once(topology: Topology, tmp_path: Path) -> None:
    tools = FakeTools(topology, tools=("docker",), engine=False)
    with pytest.raises(PreflightError) as info:
        make_setup(topology, tools, tmp_path, busy={20080}).up()
    text = str(info.value)
    for part in ("`kind` not found", "`kubectl` not found", "Docker engine", "20080"):
        assert part in text


def test_a_failing_step_after_preflight_exits_4_and_says_how_to_clean_up(
    topology: Topology, tmp_path: Path
) -> None:
    tools = FakeTools(topology, fail="docker build")
    with pytest.raises(KindSetupError, match="chaosaa kind down") as info:
        make_setup(topology, tools, tmp_path).up()
    assert info.value.exit_code == 4
    assert "simulated failure" in str(info.value)
    assert not any(starts("kind", "load")(c) for c in tools.commands)


def test_down_deletes_every_cluster_and_the_files(topology: Topology, tmp_path: Path) -> None:
    make_setup(topology, FakeTools(topology), tmp_path).up()
    tools = FakeTools(topology, tools=("docker", "kind"))  # down needs no kubectl
    make_setup(topology, tools, tmp_path).down()
    deletes = [c for c in tools.commands if starts("kind", "delete")(c)]
    assert deletes == [
        ("kind", "delete", "cluster", "--name", f"chaosaa-{r}") for r in ("us", "eu", "ap")
    ]
    assert first(tools.commands, starts("docker", "info")) < first(
        tools.commands, starts("kind", "delete")
    )
    assert not (tmp_path / "kind-target.yaml").exists()
    assert not (tmp_path / "kind").exists()
    # a killed run's host watchdogs are disarmed before the clusters go
    disarm = first(tools.commands, lambda c: c[:2] == ("sh", "-c") and "*.armed" in c[2])
    assert first(tools.commands, starts("docker", "info")) < disarm
    assert disarm < first(tools.commands, starts("kind", "delete"))
    # kind never deletes its docker network: down does, once nothing is left on it
    assert tools.commands[-1] == ("docker", "network", "rm", "kind")
    assert last(tools.commands, starts("kind", "delete")) < len(tools.commands) - 1


def test_down_keeps_the_kind_network_while_other_containers_use_it(
    topology: Topology, tmp_path: Path
) -> None:
    tools = FakeTools(topology, tools=("docker", "kind"), network_containers=2)
    make_setup(topology, tools, tmp_path).down()
    assert ("docker", "network", "inspect", "--format", "{{len .Containers}}", "kind") in (
        tools.commands
    )
    assert not any(starts("docker", "network", "rm")(c) for c in tools.commands)


def test_down_without_a_docker_engine_touches_nothing(topology: Topology, tmp_path: Path) -> None:
    make_setup(topology, FakeTools(topology), tmp_path).up()
    tools = FakeTools(topology, engine=False)
    with pytest.raises(PreflightError, match="Docker engine not running"):
        make_setup(topology, tools, tmp_path).down()
    assert not any(starts("kind", "delete")(c) for c in tools.commands)
    assert (tmp_path / "kind-target.yaml").exists()


def test_dry_run_prints_the_commands_and_writes_nothing(topology: Topology, tmp_path: Path) -> None:
    printed: list[str] = []
    runner = DryRunRunner(echo=printed.append)
    setup = KindSetup(root=REPO, topology=topology, runner=runner, state_dir=tmp_path / "s")
    setup.up()
    assert not (tmp_path / "s").exists()
    assert printed[0] == "docker info --format '{{.ServerVersion}}'"
    assert (
        "kind create cluster --config " + str(REPO / "kind-configs" / "us.yaml") + " --wait 120s"
        in printed
    )
    assert any(
        p.startswith(
            "docker exec chaosaa-us-worker ip route replace '<podCIDR of chaosaa-eu-worker>'"
        )
        for p in printed
    )
    assert printed[-1].startswith(
        "kubectl --context kind-chaosaa-ap --namespace chaosaa-demo rollout"
    )
