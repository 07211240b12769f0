"""deploy/manifests/ rendered per region as `chaosaa kind up` renders them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from chaosaa.kindsetup.manifests import (
    ManifestError,
    Rendered,
    render_region,
    render_template,
)
from chaosaa.kindsetup.topology import (
    APP_PORT,
    CLIENT_NODE_PORT,
    IMAGE,
    METRICS_NODE_PORT,
    NAMESPACE,
    PROMETHEUS_NODE_PORT,
    REPLICATION_NODE_PORT,
    ROUTER_NODE_PORT,
    Topology,
    load_topology,
)
from tests.kind.conftest import REPO
from tests.kind.helpers import fake_node_ips


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(REPO)


@pytest.fixture(scope="module")
def rendered(topology: Topology) -> dict[str, Rendered]:
    ips = fake_node_ips(topology)
    return {r: render_region(REPO, topology, r, ips) for r in topology.names}


def find(r: Rendered, kind: str, name: str) -> dict[str, Any]:
    return next(d for d in r.documents if d["kind"] == kind and d["metadata"]["name"] == name)


def test_every_region_gets_its_node_and_only_the_hub_the_router_and_prometheus(
    rendered: dict[str, Rendered],
) -> None:
    node_objects = {
        ("Namespace", NAMESPACE),
        ("ConfigMap", "chaosaa-node"),
        ("Deployment", "chaosaa-node"),
        ("Service", "chaosaa-node"),
        ("Service", "chaosaa-node-replication"),
        ("Service", "chaosaa-node-metrics"),
    }
    hub_objects = {
        ("ConfigMap", "chaosaa-router"),
        ("Deployment", "chaosaa-router"),
        ("Service", "chaosaa-router"),
        ("ConfigMap", "chaosaa-prometheus"),
        ("Deployment", "chaosaa-prometheus"),
        ("Service", "chaosaa-prometheus"),
    }
    assert set(rendered["us"].objects()) == node_objects | hub_objects
    assert set(rendered["eu"].objects()) == node_objects
    assert set(rendered["ap"].objects()) == node_objects


def test_peers_replicate_to_the_other_clusters_replication_nodeport(
    topology: Topology, rendered: dict[str, Rendered]
) -> None:
    ips = fake_node_ips(topology)
    for region, r in rendered.items():
        config = json.loads(find(r, "ConfigMap", "chaosaa-node")["data"]["node.json"])
        assert config["region"] == region
        assert config["peers"] == {
            other: f"http://{ips[other]}:{REPLICATION_NODE_PORT}"
            for other in topology.names
            if other != region
        }
        assert config["db"].startswith("/var/lib/chaosaa/")


def test_router_reaches_every_region_through_its_client_nodeport_in_failover_order(
    topology: Topology, rendered: dict[str, Rendered]
) -> None:
    ips = fake_node_ips(topology)
    config = json.loads(find(rendered["us"], "ConfigMap", "chaosaa-router")["data"]["router.json"])
    assert list(config["regions"]) == topology.names
    assert config["regions"] == {r: f"http://{ips[r]}:{CLIENT_NODE_PORT}" for r in topology.names}
    assert config["eventLog"].startswith("/var/lib/chaosaa/")


def test_prometheus_scrapes_every_region_each_second_through_the_metrics_nodeport(
    topology: Topology, rendered: dict[str, Rendered]
) -> None:
    ips = fake_node_ips(topology)
    text = find(rendered["us"], "ConfigMap", "chaosaa-prometheus")["data"]["prometheus.yml"]
    config = yaml.safe_load(text)
    assert config["global"]["scrape_interval"] == "1s"
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert {"chaosaa-node", "chaosaa-router"} <= set(jobs)
    targets = {
        sc["labels"]["region"]: sc["targets"] for sc in jobs["chaosaa-node"]["static_configs"]
    }
    assert targets == {r: [f"{ips[r]}:{METRICS_NODE_PORT}"] for r in topology.names}
    assert "|" in rendered["us"].yaml()  # multi-line config stays readable (literal block)


def test_services_expose_the_nodeports_the_kind_configs_map(
    topology: Topology, rendered: dict[str, Rendered]
) -> None:
    expected = {
        "chaosaa-node": CLIENT_NODE_PORT,
        "chaosaa-node-replication": REPLICATION_NODE_PORT,
        "chaosaa-node-metrics": METRICS_NODE_PORT,
        "chaosaa-router": ROUTER_NODE_PORT,
        "chaosaa-prometheus": PROMETHEUS_NODE_PORT,
    }
    for region, r in rendered.items():
        for doc in r.documents:
            if doc["kind"] != "Service":
                continue
            (port,) = doc["spec"]["ports"]
            assert doc["spec"]["type"] == "NodePort"
            assert port["nodePort"] == expected[doc["metadata"]["name"]]
        mapped = set(topology.region(region).config.host_ports())
        host_facing = {CLIENT_NODE_PORT} | (
            {ROUTER_NODE_PORT, PROMETHEUS_NODE_PORT} if region == "us" else set()
        )
        assert host_facing <= mapped


def test_demo_pods_use_the_loaded_image_probe_healthz_and_are_scraped(
    rendered: dict[str, Rendered],
) -> None:
    for name in ("chaosaa-node", "chaosaa-router"):
        for r in [rendered["us"]] if name == "chaosaa-router" else rendered.values():
            pod = find(r, "Deployment", name)["spec"]["template"]
            (container,) = pod["spec"]["containers"]
            assert container["image"] == IMAGE
            assert container["imagePullPolicy"] == "Never"
            assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["ports"][0]["containerPort"] == APP_PORT
            assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
            assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
            assert container["args"][0] == name.removeprefix("chaosaa-")


def test_every_object_but_the_namespace_lives_in_the_demo_namespace(
    rendered: dict[str, Rendered],
) -> None:
    for r in rendered.values():
        for doc in r.documents:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == NAMESPACE


def test_the_rendered_yaml_round_trips(rendered: dict[str, Rendered]) -> None:
    for r in rendered.values():
        assert list(yaml.safe_load_all(r.yaml())) == r.documents


def test_a_value_can_never_break_the_yaml_around_it() -> None:
    docs = render_template(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: chaosaa-demo}\n"
        "data:\n  a: ${V}\n",
        {"V": 'x: "y"\n- z: {w}\n# not a comment'},
        "t.yaml",
    )
    assert docs[0]["data"]["a"] == 'x: "y"\n- z: {w}\n# not a comment'


def test_unknown_placeholders_and_foreign_namespaces_are_refused() -> None:
    with pytest.raises(ManifestError, match=r"unknown placeholder.*NOPE"):
        render_template("a: ${NOPE}\n", {}, "t.yaml")
    with pytest.raises(ManifestError, match="namespace must be chaosaa-demo"):
        render_template(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n", {}, "t"
        )
