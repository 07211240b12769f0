"""kind-configs/*.yaml: valid for the pinned kind release, and fit to be routed together.

Three layers: kind's own loader and validator (Go, built from the pinned module), a field
schema derived from that release's v1alpha4 types.go (Python, fast), and the rules the
multi-cluster setup adds (disjoint subnets, free of Docker's ranges, distinct ports).
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaosaa.kindsetup import kindconfig
from chaosaa.kindsetup.kindconfig import (
    KIND_VERSION,
    NODE_IMAGE,
    Cluster,
    KindConfigError,
    cross_region_problems,
    parse_cluster,
)
from chaosaa.kindsetup.topology import (
    CLIENT_NODE_PORT,
    DEFAULT_REGIONS,
    PROMETHEUS_NODE_PORT,
    ROUTER_NODE_PORT,
    load_topology,
)
from tests.kind.conftest import REPO
from tests.kind.gotools import run_kindcheck

CONFIGS = [REPO / "kind-configs" / f"{r}.yaml" for r in DEFAULT_REGIONS]
DOCKER_BRIDGE = ipaddress.ip_network("172.17.0.0/16")


def test_every_config_is_accepted_by_kinds_own_loader_and_validator(kindcheck: Path) -> None:
    results = run_kindcheck(kindcheck, *CONFIGS)
    assert [r["ok"] for r in results] == [True] * len(CONFIGS), results


def test_node_image_is_the_pinned_kind_releases_default(kindcheck: Path) -> None:
    (result,) = run_kindcheck(kindcheck, CONFIGS[0])
    assert result["defaultImage"] == NODE_IMAGE
    config: Any = result["config"]
    assert {n["Image"] for n in config["Nodes"]} == {NODE_IMAGE}


def test_kinds_validator_rejects_what_our_schema_rejects(kindcheck: Path, tmp_path: Path) -> None:
    """The two checkers agree on a misspelt field (guards the Python schema)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIGS[1].read_text().replace("podSubnet:", "podSubnets:"))
    (result,) = run_kindcheck(kindcheck, bad)
    assert result["ok"] is False and "podSubnets" in str(result["error"])
    with pytest.raises(KindConfigError, match="podSubnets"):
        parse_cluster(bad.read_text(), str(bad))


def _go_yaml_fields(types_go: str, struct: str) -> set[str]:
    body = re.search(rf"type {struct} struct {{(.*?)\n}}", types_go, re.S)
    assert body, struct
    fields = set(re.findall(r'yaml:"([A-Za-z0-9]+)[,"]', body.group(1)))
    if "TypeMeta" in body.group(1):
        fields |= {"kind", "apiVersion"}
    return fields


def _model_fields(model: type[Any]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


@pytest.mark.parametrize(
    ("struct", "model"),
    [
        ("Cluster", kindconfig.Cluster),
        ("Node", kindconfig.Node),
        ("Networking", kindconfig.Networking),
        ("PortMapping", kindconfig.PortMapping),
        ("Mount", kindconfig.Mount),
        ("PatchJSON6902", kindconfig.PatchJSON6902),
    ],
)
def test_python_schema_has_exactly_the_fields_of_kinds_v1alpha4_types(
    kind_module: Path, struct: str, model: type[Any]
) -> None:
    types_go = (kind_module / "pkg/apis/config/v1alpha4/types.go").read_text()
    assert _model_fields(model) == _go_yaml_fields(types_go, struct), KIND_VERSION


def test_every_config_parses_with_the_strict_schema() -> None:
    for path in CONFIGS:
        cluster = parse_cluster(path.read_text(), str(path))
        assert cluster.api_version == "kind.x-k8s.io/v1alpha4"


def test_unknown_fields_are_rejected_with_their_path() -> None:
    text = CONFIGS[0].read_text().replace("extraPortMappings:", "extraPortMapping:")
    with pytest.raises(KindConfigError, match=r"nodes\[0\]\.extraPortMapping"):
        parse_cluster(text, "us.yaml")


def _clusters() -> dict[str, Cluster]:
    return {
        r: parse_cluster(p.read_text(), str(p))
        for r, p in zip(DEFAULT_REGIONS, CONFIGS, strict=True)
    }


def test_configs_pass_the_cross_region_rules() -> None:
    load_topology(REPO)  # raises on any problem
    assert cross_region_problems(_clusters(), {r: r for r in DEFAULT_REGIONS}) == []


def test_pod_and_service_subnets_are_disjoint_across_regions_and_clear_of_docker() -> None:
    subnets = [
        ipaddress.ip_network(s)
        for c in _clusters().values()
        for s in (c.networking.pod_subnet, c.networking.service_subnet)
    ]
    assert len(subnets) == 2 * len(DEFAULT_REGIONS)
    for a, b in itertools.combinations(subnets, 2):
        assert not a.overlaps(b), (a, b)
    for net in subnets:
        assert not net.overlaps(DOCKER_BRIDGE)
        assert not net.overlaps(ipaddress.ip_network("172.16.0.0/12"))  # docker's pools


def test_api_server_and_host_ports_are_distinct_and_on_loopback() -> None:
    topo = load_topology(REPO)
    ports = [p for rc in topo.regions for p in rc.host_ports]
    assert len(ports) == len(set(ports))
    for rc in topo.regions:
        assert rc.config.networking.api_server_address == "127.0.0.1"
        for node in rc.config.nodes:
            assert {pm.listen_address for pm in node.extra_port_mappings} <= {"127.0.0.1"}


def test_every_node_carries_region_and_zone_labels() -> None:
    for region, cluster in _clusters().items():
        assert [n.role for n in cluster.nodes].count("control-plane") == 1
        assert any(n.role == "worker" for n in cluster.nodes)
        zones = [n.labels["topology.kubernetes.io/zone"] for n in cluster.nodes]
        assert len(set(zones)) == len(zones)
        for node in cluster.nodes:
            assert node.labels["topology.kubernetes.io/region"] == region


def test_hub_maps_router_and_prometheus_and_every_region_its_endpoint() -> None:
    topo = load_topology(REPO)
    assert topo.hub.region == "us"
    assert {ROUTER_NODE_PORT, PROMETHEUS_NODE_PORT} <= set(topo.hub.config.host_ports())
    for rc in topo.regions:
        assert CLIENT_NODE_PORT in rc.config.host_ports()
    assert topo.router_url == "http://127.0.0.1:20080"
    assert topo.prometheus_url == "http://127.0.0.1:20090"
    assert [rc.endpoint for rc in topo.regions] == [
        "http://127.0.0.1:21080",
        "http://127.0.0.1:22080",
        "http://127.0.0.1:23080",
    ]


def test_node_container_names_follow_kinds_namer() -> None:
    cluster = _clusters()["eu"]
    assert cluster.node_names() == ["chaosaa-eu-control-plane", "chaosaa-eu-worker"]
    two = cluster.model_copy(update={"nodes": [*cluster.nodes, cluster.nodes[1]]})
    assert two.node_names()[-1] == "chaosaa-eu-worker2"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: d["networking"].update(podSubnet="10.10.0.0/16"), "overlaps 10.10.0.0/16"),
        (lambda d: d["networking"].update(serviceSubnet="172.17.5.0/24"), "docker0"),
        (lambda d: d["networking"].update(podSubnet="10.244.0.0/16"), "kind's default pod"),
        (lambda d: d["networking"].update(apiServerPort=21443), "host port 21443 is also used"),
        (
            lambda d: d["nodes"][1]["labels"].update({"topology.kubernetes.io/region": "us"}),
            "topology.kubernetes.io/region must be 'eu'",
        ),
        (
            lambda d: d["nodes"][0]["extraPortMappings"][0].update(listenAddress="0.0.0.0"),
            "must listen on 127.0.0.1",
        ),
        (lambda d: d["nodes"][0].update(image="kindest/node:v1.37.0"), "pin the node image"),
        (lambda d: d.update(name="chaosaa-us"), "also the cluster of region us"),
    ],
)
def test_cross_region_rules_name_the_file_field_and_reason(edit: Any, problem: str) -> None:
    clusters = _clusters()
    data = yaml.safe_load(CONFIGS[1].read_text())
    edit(data)
    clusters["eu"] = Cluster.model_validate(data)
    problems = cross_region_problems(clusters, {r: f"{r}.yaml" for r in DEFAULT_REGIONS})
    assert any(problem in p for p in problems), problems
    assert all(p.split(":")[0].endswith(".yaml") for p in problems)
