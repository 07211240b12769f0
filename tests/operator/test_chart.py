"""The Helm chart: lint, render, apply (server-side dry run) to a real apiserver."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.operator.conftest import REPO, kubectl

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180)]

CHART = REPO / "charts" / "chaosaa"
EVERYTHING = [
    "--set",
    "agent.enabled=true",
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "operator.kubeconfigSecrets={eu-kubeconfig}",
    "--set",
    "operator.allowedContexts={prod-us,prod-eu}",
]


def helm(bin_dir: Path, *args: str) -> str:
    out = subprocess.run(
        [str(bin_dir / "helm"), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def render(bin_dir: Path, namespace: str, *values: str) -> list[dict[str, Any]]:
    text = helm(bin_dir, "template", "chaosaa", str(CHART), "-n", namespace, *values)
    return [d for d in yaml.safe_load_all(text) if d]


def kind(docs: list[dict[str, Any]], kind_: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind_]


@pytest.mark.parametrize("values", [[], EVERYTHING, ["--set", "operator.watchAllNamespaces=true"]])
def test_helm_lint_passes(k8s_bin_dir: Path, values: list[str]) -> None:
    out = helm(k8s_bin_dir, "lint", "--strict", str(CHART), *values)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize(
    "values",
    [[], EVERYTHING, ["--set", "operator.watchAllNamespaces=true", "--set", "agent.enabled=true"]],
)
def test_the_rendered_chart_with_its_crds_is_accepted_by_the_apiserver(
    k8s_bin_dir: Path, control_planes: Any, k8s_namespace: str, values: list[str]
) -> None:
    text = helm(
        k8s_bin_dir,
        "template",
        "chaosaa",
        str(CHART),
        "-n",
        k8s_namespace,
        "--include-crds",
        *values,
    )
    # no ServiceMonitor CRD in these clusters: it is checked by shape below
    docs = [d for d in yaml.safe_load_all(text) if d and d["kind"] != "ServiceMonitor"]
    out = kubectl(
        k8s_bin_dir,
        control_planes.kubeconfig,
        "--context",
        control_planes.context("eu"),
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(docs),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "deployment.apps/chaosaa-operator created (server dry run)" in out.stdout


def test_the_operator_is_one_replica_recreated_probed_and_unprivileged(k8s_bin_dir: Path) -> None:
    docs = render(k8s_bin_dir, "chaos", "--set", "operator.watchNamespaces={chaos,shop}")
    (deploy,) = kind(docs, "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    (container,) = spec["template"]["spec"]["containers"]
    assert container["args"][:4] == [
        "operator",
        "--standalone",
        "--namespace=chaos",
        "--namespace=shop",
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    # a Role in each watched namespace, nothing cluster-wide
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in kind(docs, "Role")}
    assert roles == {
        ("chaos", "chaosaa-operator"),
        ("shop", "chaosaa-operator"),
        ("chaos", "chaosaa-operator-lease"),
    }
    assert not kind(docs, "ClusterRole") and not kind(docs, "ClusterRoleBinding")


def test_the_agent_has_net_admin_only_on_the_host_network(k8s_bin_dir: Path) -> None:
    docs = render(k8s_bin_dir, "chaos", "--set", "agent.enabled=true")
    (daemonset,) = kind(docs, "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert "SYS_ADMIN" not in yaml.safe_dump(daemonset)
    (role,) = [r for r in kind(docs, "ClusterRole") if r["metadata"]["name"] == "chaosaa-agent"]
    assert role["rules"] == [
        {
            "apiGroups": ["chaosaa.io"],
            "resources": ["networkfaults"],
            # patch: the agent's own finalizer, so a deleted fault is reverted first
            "verbs": ["get", "list", "watch", "patch"],
        },
        {"apiGroups": ["chaosaa.io"], "resources": ["networkfaults/status"], "verbs": ["patch"]},
    ]
    (lease_role,) = [r for r in kind(docs, "Role") if r["metadata"]["name"] == "chaosaa-agent"]
    assert lease_role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "patch", "delete"],
        }
    ]
    env = {e["name"]: e for e in container["env"]}
    assert "CHAOSAA_NAMESPACE" in env


def test_the_service_monitor_scrapes_the_operators_metrics_port(k8s_bin_dir: Path) -> None:
    docs = render(k8s_bin_dir, "chaos", "--set", "metrics.serviceMonitor.enabled=true")
    (monitor,) = kind(docs, "ServiceMonitor")
    (service,) = kind(docs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert kind(render(k8s_bin_dir, "chaos"), "ServiceMonitor") == []  # off by default


def test_secrets_can_be_limited_to_the_named_kubeconfigs(k8s_bin_dir: Path) -> None:
    docs = render(k8s_bin_dir, "chaos", "--set", "operator.kubeconfigSecrets={eu-kubeconfig}")
    (role,) = [r for r in kind(docs, "Role") if r["metadata"]["name"] == "chaosaa-operator"]
    (secrets,) = [r for r in role["rules"] if r["resources"] == ["secrets"]]
    assert secrets == {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get"],
        "resourceNames": ["eu-kubeconfig"],
    }


def test_notes_explain_how_to_trigger_a_run(
    k8s_bin_dir: Path, control_planes: Any, k8s_namespace: str
) -> None:
    out = helm(
        k8s_bin_dir,
        "install",
        "chaosaa",
        str(CHART),
        "-n",
        k8s_namespace,
        "--dry-run=server",
        "--kubeconfig",
        str(control_planes.kubeconfig),
        "--kube-context",
        control_planes.context("eu"),
    )
    notes = out.split("NOTES:", 1)[1]
    assert f"kubectl -n {k8s_namespace} annotate gameday region-down chaosaa.io/trigger" in notes


def test_a_region_cluster_gets_the_agent_without_the_operator(k8s_bin_dir: Path) -> None:
    docs = render(k8s_bin_dir, "chaos", "--set", "operator.enabled=false", *EVERYTHING[:4])
    kinds = {d["kind"] for d in docs}
    assert "DaemonSet" in kinds
    assert not kinds & {"Deployment", "Service", "ServiceMonitor"}
    names = {d["metadata"]["name"] for d in docs}
    assert all(name.endswith("-agent") for name in names), names
