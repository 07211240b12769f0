"""`chaosaa kind up` on machines unlike a user's laptop: a local node image, fewer workers,
a cgroup v1 Docker host. One code path renders the kind config for all of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from chaosaa.cli.main import cli
from chaosaa.kindsetup.kindconfig import NODE_IMAGE, load_cluster, parse_cluster
from chaosaa.kindsetup.options import KUBELET_CGROUP_V1_PATCH, ClusterOptions, render_cluster
from chaosaa.kindsetup.setup import KindSetup, PreflightError
from chaosaa.kindsetup.targetfile import TOPOLOGY_ANNOTATION
from chaosaa.kindsetup.topology import IMAGE, Topology, load_topology
from chaosaa.spec.loader import load_gameday
from tests.kind.conftest import REPO
from tests.kind.fakes import FakeHTTP, FakeTools

LOCAL_NODE = "chaosaa.local/kind-node:v1.37.2"
LOCAL_BASE = "chaosaa.local/python:3.11-bookworm"


def make_setup(topology: Topology, tools: FakeTools, state: Path, **kw: object) -> KindSetup:
    return KindSetup(
        root=REPO,
        topology=topology,
        runner=tools,
        state_dir=state,
        port_in_use=lambda _host, _port: False,
        http_get=FakeHTTP(len(topology.regions) + 2),
        sleep=lambda _s: None,
        **kw,  # type: ignore[arg-type]
    )


def creates(tools: FakeTools) -> list[tuple[str, ...]]:
    return [c for c in tools.commands if c[:3] == ("kind", "create", "cluster")]


def test_no_options_on_a_cgroup_v2_host_uses_kind_configs_as_written(tmp_path: Path) -> None:
    topology = load_topology(REPO)
    tools = FakeTools(topology)
    make_setup(topology, tools, tmp_path).up()
    assert [c[4] for c in creates(tools)] == [
        str(REPO / "kind-configs" / f"{r}.yaml") for r in ("us", "eu", "ap")
    ]
    assert not list(tmp_path.glob("kind/*-cluster.yaml"))


def test_a_local_node_image_and_no_workers_render_the_config_kind_gets(tmp_path: Path) -> None:
    options = ClusterOptions(node_image=LOCAL_NODE, workers=0)
    topology = load_topology(REPO, options=options)
    tools = FakeTools(topology, images=(LOCAL_NODE,))
    path = make_setup(topology, tools, tmp_path).up()

    for cmd, region in zip(creates(tools), ("us", "eu", "ap"), strict=True):
        rendered = Path(cmd[4])
        assert rendered == tmp_path / "kind" / f"{region}-cluster.yaml"
        cluster = load_cluster(rendered)  # our strict schema: kind would accept it
        source = load_cluster(REPO / "kind-configs" / f"{region}.yaml")
        assert [n.role for n in cluster.nodes] == ["control-plane"]
        assert cluster.nodes[0].image == LOCAL_NODE
        # everything else is as written: ports, subnets, labels, mappings
        assert cluster.networking == source.networking
        assert cluster.nodes[0].labels == source.nodes[0].labels
        assert cluster.nodes[0].extra_port_mappings == source.nodes[0].extra_port_mappings
        assert cluster.kubeadm_config_patches == []

    # the target file names only the nodes that exist
    annotation = load_gameday(path).metadata.annotations[TOPOLOGY_ANNOTATION]
    topo = yaml.safe_load(annotation)
    assert [n["name"] for n in topo["regions"]["eu"]["nodes"]] == ["chaosaa-eu-control-plane"]
    routes = [c for c in tools.commands if c[:2] == ("docker", "exec") and c[3] == "ip"]
    assert len(routes) == 3 * 2  # one node per cluster, routes to the two others


def test_a_cgroup_v1_docker_host_gets_the_kubelet_patch_whatever_the_image(
    tmp_path: Path,
) -> None:
    topology = load_topology(REPO)
    tools = FakeTools(topology, cgroup_version="1")
    make_setup(topology, tools, tmp_path).up()
    for cmd in creates(tools):
        cluster = load_cluster(Path(cmd[4]))
        assert cluster.kubeadm_config_patches == [KUBELET_CGROUP_V1_PATCH]
        assert {n.image for n in cluster.nodes} == {NODE_IMAGE}
        assert len(cluster.nodes) == 2
    patch = yaml.safe_load(KUBELET_CGROUP_V1_PATCH)
    assert patch == {"kind": "KubeletConfiguration", "failCgroupV1": False}


def test_preflight_names_a_missing_local_node_image_and_touches_nothing(tmp_path: Path) -> None:
    topology = load_topology(REPO, options=ClusterOptions(node_image=LOCAL_NODE))
    tools = FakeTools(topology)  # the image is not in the engine
    with pytest.raises(PreflightError, match=f"node image {LOCAL_NODE} is not in the local"):
        make_setup(topology, tools, tmp_path / "state").up()
    assert not creates(tools)
    assert not (tmp_path / "state").exists()


def test_the_demo_image_builds_on_the_base_image_asked_for(tmp_path: Path) -> None:
    topology = load_topology(REPO)
    tools = FakeTools(topology)
    make_setup(topology, tools, tmp_path, base_image=LOCAL_BASE).up()
    (build,) = [c for c in tools.commands if c[:2] == ("docker", "build")]
    assert build == (
        "docker", "build", "--file", str(REPO / "deploy" / "Dockerfile"),
        "--build-arg", f"BASE_IMAGE={LOCAL_BASE}", "--tag", IMAGE, str(REPO),
    )  # fmt: skip


def test_render_keeps_only_what_the_source_sets() -> None:
    source = REPO / "kind-configs" / "ap.yaml"
    cluster = load_cluster(source)
    text = render_cluster(ClusterOptions(workers=1).apply(cluster), str(source))
    assert parse_cluster(text, "rendered") == cluster
    body = yaml.safe_load(text)
    assert set(body) == set(yaml.safe_load(source.read_text()))


def test_cli_options_and_environment_reach_the_rendered_configs(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["kind", "up", "--root", str(REPO), "--state-dir", str(tmp_path), "--dry-run",
         "--workers", "0", "--base-image", LOCAL_BASE],
        env={"CHAOSAA_KIND_NODE_IMAGE": LOCAL_NODE},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"with node image {LOCAL_NODE}; 0 workers" in out
    assert f"kind create cluster --config {tmp_path}/kind/us-cluster.yaml --wait 120s" in out
    assert f"--build-arg BASE_IMAGE={LOCAL_BASE}" in out
    assert "chaosaa-us-worker" not in out
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_workers_other_than_0_or_1_are_refused() -> None:
    result = CliRunner().invoke(cli, ["kind", "up", "--root", str(REPO), "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers" in result.output
