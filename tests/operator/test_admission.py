"""The CRD schema rejects what it can express at admission, on a real kube-apiserver."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from tests.operator.conftest import GROUP, REPO, VERSION, Cluster

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(120)]

VALID: dict[str, Any] = {
    "target": {"kind": "lab", "regions": {"us": {}, "eu": {}}},
    "steadyState": [{"name": "up", "promql": "min(up)", "expect": ">= 1"}],
    "faults": [
        {"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "10s"},
        {
            "name": "slow",
            "type": "latency",
            "links": [["us", "eu"]],
            "delay": "200ms",
            "duration": "10s",
        },
    ],
    "slos": [
        {"name": "failover", "type": "failoverTime", "max": "30s"},
        {"name": "errors", "type": "errorRate", "max": 0.01},
        {"name": "lost", "type": "lostWrites", "max": 0},
    ],
    "schedule": "0 10 1 * *",
}


def create(cluster: Cluster, spec: dict[str, Any], name: str = "gd") -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GameDay",
        "metadata": {"name": name},
        "spec": spec,
    }
    out: dict[str, Any] = cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, cluster.ns, "gamedays", body, dry_run="All"
    )
    return out


def rejected(cluster: Cluster, spec: dict[str, Any], name: str = "gd") -> str:
    with pytest.raises(ApiException) as err:
        create(cluster, spec, name)
    assert err.value.status == 422, err.value.body
    return str(err.value.body)


def edit(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(VALID)
    node: Any = spec
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is DELETE:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return spec


DELETE = object()
LAG = {"name": "lag", "type": "replicationLag", "max": "5s"}


def test_a_nullable_field_set_to_null_is_admitted(cluster: Cluster) -> None:
    """A null is absent to CEL: the per-type rule on `source` must not trip over it."""
    out = create(cluster, edit("slos.0", LAG | {"source": None}))
    assert out["spec"]["slos"][0]["name"] == "lag"


def test_a_valid_gameday_and_every_experiment_are_admitted(cluster: Cluster) -> None:
    out = create(cluster, VALID)
    assert out["spec"]["concurrencyPolicy"] == "Forbid"  # defaults the apiserver fills in
    assert out["spec"]["suspend"] is False and out["spec"]["timeZone"] == "UTC"
    for path in sorted((REPO / "experiments").rglob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        create(cluster, doc["spec"], doc["metadata"]["name"])


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("faults.0.duration", "10 seconds", "spec.faults[0].duration in body should match"),
        ("faults.0.type", "wormhole", 'Unsupported value: \\"wormhole\\"'),
        ("faults.0.delay", "5s", "type blackhole takes none of: links, delay"),
        ("faults.1.delay", DELETE, "type latency requires delay"),
        ("target.regions", {"us": {}, "EU": {}}, "keys must match"),
        ("target.kind", "cloud", 'Unsupported value: \\"cloud\\"'),
        ("concurrencyPolicy", "Sometimes", 'Unsupported value: \\"Sometimes\\"'),
        ("steadyState.0.expect", "about 1", "spec.steadyState[0].expect in body should match"),
        ("slos.0.type", "uptime", 'Unsupported value: \\"uptime\\"'),
        ("slos.0.recoverWithin", "5s", "type failoverTime takes none of"),
        ("faults.0.name", "EU_dark", "spec.faults[0].name in body should match"),
        ("slos.0", LAG | {"source": "guess"}, "source: must be prometheus, canary or both"),
    ],
)
def test_the_schema_rejects_at_admission(
    cluster: Cluster, path: str, value: Any, message: str
) -> None:
    assert message in rejected(cluster, edit(path, value))


def test_names_are_dns_labels_of_at_most_63_characters(cluster: Cluster) -> None:
    assert "at most 63 characters" in rejected(cluster, VALID, name="x" * 64)


def test_what_no_schema_can_express_is_admitted_and_left_to_the_operator(
    cluster: Cluster,
) -> None:
    # a region that is not one of target.regions; the SLO max of the wrong type
    create(cluster, edit("faults.0.regions", ["ap"]))
    create(cluster, edit("slos.0.max", 30))


def test_a_runs_spec_is_immutable(cluster: Cluster) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GameDayRun",
        "metadata": {"name": "gd-1"},
        "spec": {"gameDay": "gd", "trigger": "manual", "gameDaySpec": VALID},
    }
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, cluster.ns, "gamedayruns", body)
    with pytest.raises(ApiException) as err:
        cluster.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            cluster.ns,
            "gamedayruns",
            "gd-1",
            {"spec": {"trigger": "schedule"}},
            _content_type="application/merge-patch+json",
        )
    assert "spec is immutable" in str(err.value.body)


def test_kubectl_get_shows_the_printer_columns(
    cluster: Cluster, k8s_bin_dir: Path, control_planes: Any
) -> None:
    cluster.create_gameday("region-down", VALID)
    from tests.operator.conftest import kubectl

    out = kubectl(
        k8s_bin_dir,
        control_planes.kubeconfig,
        "--context",
        control_planes.context("us"),
        "-n",
        cluster.ns,
        "get",
        "gamedays",
    ).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "SCHEDULE",
        "SUSPEND",
        "LAST",
        "VERDICT",
        "LAST",
        "FAILOVER",
        "NEXT",
        "RUN",
        "AGE",
    ]
    assert row.split()[:7] == ["region-down", "0", "10", "1", "*", "*", "false"]
    runs = kubectl(
        k8s_bin_dir,
        control_planes.kubeconfig,
        "--context",
        control_planes.context("us"),
        "-n",
        cluster.ns,
        "get",
        "gamedayruns",
    ).stderr
    assert "No resources found" in runs
