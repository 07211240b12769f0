"""The operator does its whole job with the chart's ServiceAccount, and nothing more.

The ServiceAccount and its Roles come from ``helm template``; the operator runs with a
bound token of that ServiceAccount (TokenRequest) and no other credentials.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from chaosaa.operator.kube import Kube
from chaosaa.operator.kubeconfigs import read_kubeconfigs
from chaosaa.operator.runs import validate
from tests.operator.conftest import Cluster, kubectl, wait_for
from tests.operator.test_chart import render

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(240)]

SA = "chaosaa-operator"
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def install_rbac(k8s_bin_dir: Path, control_planes: Any, namespace: str, *values: str) -> None:
    docs = [d for d in render(k8s_bin_dir, namespace, *values) if d["kind"] in RBAC_KINDS]
    kubectl(
        k8s_bin_dir,
        control_planes.kubeconfig,
        "--context",
        control_planes.context("us"),
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(docs),
    )


def token_kubeconfig(control_planes: Any, namespace: str, path: Path) -> Path:
    token = control_planes.service_account_token("us", namespace, SA)
    cp = control_planes.regions["us"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "us",
                        "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)},
                    }
                ],
                "users": [{"name": SA, "user": {"token": token}}],
                "contexts": [
                    {"name": "sa", "context": {"cluster": "us", "user": SA, "namespace": namespace}}
                ],
                "current-context": "sa",
            }
        )
    )
    return path


def lab_spec(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "target": {"kind": "lab", "regions": {"us": {}, "eu": {}}},
        "faults": [{"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "2s"}],
        "slos": [{"name": "errors", "type": "errorRate", "max": 1}],
    }
    body.update(extra)
    return body


def reason(cluster: Cluster, run: str) -> str:
    status = (cluster.run(run) or {}).get("status") or {}
    return str(status.get("reason") or "") if status.get("finishedAt") else ""


def test_the_operator_does_its_whole_job_with_the_charts_service_account(
    cluster: Cluster,
    start_operator: Any,
    control_planes: Any,
    k8s_bin_dir: Path,
    tmp_path: Path,
) -> None:
    ns = cluster.ns
    install_rbac(k8s_bin_dir, control_planes, ns)
    config = token_kubeconfig(control_planes, ns, tmp_path / "sa.kubeconfig")
    cluster.core.create_namespaced_secret(
        ns,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="remote"),
            string_data={
                "kubeconfig": yaml.safe_dump(
                    _minified(control_planes.kubeconfig, control_planes.context("eu"))
                )
            },
        ),
    )
    remote = {"us": {}, "eu": {"kubeconfigSecret": {"name": "remote"}}}
    cluster.create_gameday(
        "scheduled",
        lab_spec(
            schedule="* * * * *",
            concurrencyPolicy="Allow",
            target={"kind": "lab", "regions": remote},
        ),
    )
    cluster.create_gameday(
        "missing-secret",
        lab_spec(
            target={
                "kind": "lab",
                "regions": {"us": {}, "eu": {"kubeconfigSecret": {"name": "nope"}}},
            }
        ),
        annotations={"chaosaa.io/trigger": "1"},
    )
    op = start_operator(
        ns,
        "--lab-state",
        str(tmp_path / "no-lab"),
        clock=f"scale=12,anchor={int(time.time())}",
        kubeconfig=config,
    )

    # scheduled runs are created, claimed, executed; the Secret was read (by name): the run
    # got as far as looking for the lab
    run = wait_for(lambda: cluster.runs("scheduled"), 30, "a scheduled run")[0]["metadata"]["name"]
    wait_for(lambda: reason(cluster, run), 20, "the run to finish")
    assert reason(cluster, run).startswith("no lab is running")
    status = cluster.gameday("scheduled")["status"]
    assert status["lastScheduleTime"] and status["conditions"][0]["status"] == "True"
    assert "Scheduled" in cluster.reasons("scheduled")  # Events are created
    # a manual trigger; a Secret that does not exist is named in the run's reason
    manual = wait_for(lambda: cluster.runs("missing-secret"), 20, "the triggered run")
    name = manual[0]["metadata"]["name"]
    wait_for(lambda: reason(cluster, name), 20, "the triggered run to finish")
    assert f"Secret {ns}/nope does not exist" in reason(cluster, name)
    # the finalizer is the operator's, and it lets go
    assert cluster.run(name)["metadata"]["finalizers"] == ["chaosaa.io/finalizer"]  # type: ignore[index]
    cluster.delete_run(name)
    wait_for(lambda: cluster.run(name) is None, 20, "the run deleted")
    # the lease is held under the operator's identity
    lease = k8s.CoordinationV1Api(cluster.api).read_namespaced_lease("chaosaa-operator", ns)
    assert f"lease {ns}/chaosaa-operator acquired by {lease.spec.holder_identity}" in op.output()
    assert "Forbidden" not in op.output(), op.output()[-4000:]  # nothing it tried was refused


def _minified(path: Path, context: str) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    ctx = next(c for c in doc["contexts"] if c["name"] == context)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [c for c in doc["clusters"] if c["name"] == ctx["context"]["cluster"]],
        "users": [u for u in doc["users"] if u["name"] == ctx["context"]["user"]],
        "contexts": [ctx],
        "current-context": context,
    }


ALLOWED = [
    ("get", "gamedays.chaosaa.io"),
    ("list", "gamedays.chaosaa.io"),
    ("watch", "gamedays.chaosaa.io"),
    ("patch", "gamedays.chaosaa.io/status"),
    ("create", "gamedayruns.chaosaa.io"),
    ("delete", "gamedayruns.chaosaa.io"),
    ("patch", "gamedayruns.chaosaa.io"),
    ("patch", "gamedayruns.chaosaa.io/status"),
    ("create", "events"),
    ("get", "secrets/remote-kubeconfig"),
    ("create", "leases.coordination.k8s.io"),
    ("update", "leases.coordination.k8s.io/chaosaa-operator"),
]
DENIED = [
    ("update", "gamedays.chaosaa.io/status"),
    ("update", "gamedayruns.chaosaa.io/status"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "secrets"),
    ("update", "gamedays.chaosaa.io"),  # the spec is the user's
    ("patch", "gamedays.chaosaa.io"),
    ("delete", "gamedays.chaosaa.io"),
    ("update", "leases.coordination.k8s.io/someone-elses-lease"),
    ("create", "pods"),
    ("create", "pods/exec"),
    ("create", "deployments.apps"),
    ("get", "configmaps"),
    ("create", "networkfaults.chaosaa.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("impersonate", "serviceaccounts"),
]
DENIED_CLUSTER = [
    ("delete", "namespaces"),
    ("get", "nodes"),
    ("list", "secrets"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
]


def can_i(
    k8s_bin_dir: Path, control_planes: Any, who: str, verb: str, what: str, *scope: str
) -> bool:
    extra = list(scope)
    if what.endswith("/status"):  # a subresource, not an object named "status"
        what = what.removesuffix("/status")
        extra.append("--subresource=status")
    out = kubectl(
        k8s_bin_dir,
        control_planes.kubeconfig,
        "--context",
        control_planes.context("us"),
        "auth",
        "can-i",
        verb,
        what,
        f"--as={who}",
        *extra,
        check=False,
    )
    return out.stdout.strip() == "yes"


def test_the_operators_permissions_are_exactly_what_it_needs(
    cluster: Cluster, control_planes: Any, k8s_bin_dir: Path, kube_clients: Any
) -> None:
    ns = cluster.ns
    other = f"{ns}-other"
    k8s.CoreV1Api(kube_clients["us"]).create_namespace(
        k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=other))
    )
    try:
        install_rbac(k8s_bin_dir, control_planes, ns, "--set", "agent.enabled=true")
        who = f"system:serviceaccount:{ns}:{SA}"
        matrix = {
            (verb, what, "ns"): can_i(k8s_bin_dir, control_planes, who, verb, what, "-n", ns)
            for verb, what in ALLOWED + DENIED
        }
        matrix |= {
            (verb, what, "other"): can_i(k8s_bin_dir, control_planes, who, verb, what, "-n", other)
            for verb, what in [
                ("get", "secrets/remote-kubeconfig"),
                ("get", "gamedays.chaosaa.io"),
                ("create", "events"),
            ]
        }
        matrix |= {
            (verb, what, "cluster"): can_i(
                k8s_bin_dir, control_planes, who, verb, what, "--all-namespaces"
            )
            for verb, what in DENIED_CLUSTER
        }
        expected = {key: key[:2] in ALLOWED and key[2] == "ns" for key in matrix}
        assert matrix == expected

        agent = f"system:serviceaccount:{ns}:chaosaa-agent"
        agent_matrix = {
            (verb, what): can_i(k8s_bin_dir, control_planes, agent, verb, what)
            for verb, what in [
                ("get", "networkfaults.chaosaa.io"),
                ("list", "networkfaults.chaosaa.io"),
                ("watch", "networkfaults.chaosaa.io"),
                ("patch", "networkfaults.chaosaa.io/status"),
                ("create", "networkfaults.chaosaa.io"),
                ("delete", "networkfaults.chaosaa.io"),
                ("patch", "networkfaults.chaosaa.io"),
                ("get", "secrets"),
                ("get", "gamedays.chaosaa.io"),
            ]
        }
        assert agent_matrix == {
            key: key
            in {
                ("get", "networkfaults.chaosaa.io"),
                ("list", "networkfaults.chaosaa.io"),
                ("watch", "networkfaults.chaosaa.io"),
                ("patch", "networkfaults.chaosaa.io/status"),
                ("patch", "networkfaults.chaosaa.io"),  # its finalizer
            }
            for key in agent_matrix
        }
    finally:
        k8s.CoreV1Api(kube_clients["us"]).delete_namespace(other)


def test_a_remote_regions_kubeconfig_secret_reaches_that_cluster(
    cluster: Cluster, control_planes: Any, kube_clients: Any, k8s_namespace: str, tmp_path: Path
) -> None:
    """The Secret's kubeconfig (here: region eu's) becomes a file the target can use."""
    cluster.core.create_namespaced_secret(
        cluster.ns,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="eu"),
            string_data={
                "config": yaml.safe_dump(
                    _minified(control_planes.kubeconfig, control_planes.context("eu"))
                )
            },
        ),
    )
    gameday = validate(
        "remote",
        cluster.ns,
        {
            "target": {
                "kind": "kubernetes",
                "regions": {
                    "eu": {
                        "context": control_planes.context("eu"),
                        "kubeconfigSecret": {"name": "eu", "key": "config"},
                    }
                },
            },
        },
    )

    async def read() -> Any:
        kube = Kube(kube_clients["us"], workers=1)
        try:
            return await read_kubeconfigs(kube, cluster.ns, gameday)
        finally:
            kube._pool.shutdown(wait=True)

    creds = asyncio.run(read())
    try:
        assert creds.merged and creds.per_region.keys() == {"eu"}
        assert (Path(creds.merged).stat().st_mode & 0o777) == 0o600
        api = k8s_config.new_client_from_config(
            config_file=creds.merged, context=control_planes.context("eu")
        )
        control_planes.assert_owned_client(api)
        names = [n.metadata.name for n in k8s.CoreV1Api(api).list_namespace().items]
        assert k8s_namespace in names  # created in every region by the fixture
        api.close()
    finally:
        creds.cleanup()
    assert not Path(creds.merged).exists()
