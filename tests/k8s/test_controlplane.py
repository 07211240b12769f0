"""Smoke tests: the per-region control planes behave like real (small) clusters."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from tests.k8s import controlplane
from tests.k8s.controlplane import (
    POD_SUPERNET,
    REGION_LABEL,
    ZONE_LABEL,
    ControlPlanes,
    ForeignContextError,
)

pytestmark = pytest.mark.k8s

T = TypeVar("T")


def eventually(what: str, fn: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``fn`` until it returns something truthy; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def ready_endpoints(api: k8s.ApiClient, namespace: str, service: str) -> list[str]:
    """Addresses of the ready endpoints of ``service`` (from its EndpointSlices)."""
    slices = (
        k8s.DiscoveryV1Api(api)
        .list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}"
        )
        .items
    )
    return [
        a
        for s in slices
        for e in s.endpoints or []
        if e.conditions and e.conditions.ready
        for a in e.addresses
    ]


def deployment(name: str, replicas: int) -> k8s.V1Deployment:
    labels = {"app": name}
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1DeploymentSpec(
            replicas=replicas,
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels),
                spec=k8s.V1PodSpec(
                    containers=[k8s.V1Container(name="app", image="registry.invalid/app:1")]
                ),
            ),
        ),
    )


def test_every_region_has_its_own_apiserver(
    control_planes: ControlPlanes, kube_clients: dict[str, k8s.ApiClient]
) -> None:
    assert set(kube_clients) == {"us", "eu", "ap"}
    servers = {control_planes.server(r) for r in kube_clients}
    assert len(servers) == 3
    for region, api in kube_clients.items():
        version = k8s.VersionApi(api).get_code()
        assert version.git_version.startswith("v1.")
        assert api.configuration.host == control_planes.server(region)
    # Each region is a separate cluster: an object made in one is absent in the others.
    k8s.CoreV1Api(kube_clients["us"]).create_namespace(
        k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="only-in-us"))
    )
    for region in ("eu", "ap"):
        with pytest.raises(ApiException) as err:
            k8s.CoreV1Api(kube_clients[region]).read_namespace("only-in-us")
        assert err.value.status == 404


def test_kubeconfig_has_one_context_per_region(
    kubeconfig: Path, control_planes: ControlPlanes
) -> None:
    doc = yaml.safe_load(kubeconfig.read_text())
    assert {c["name"] for c in doc["contexts"]} == {
        "chaosaa-test-us",
        "chaosaa-test-eu",
        "chaosaa-test-ap",
    }
    # The standard loader works with it (what chaosaa's kubernetes target will use).
    api = k8s_config.new_client_from_config(config_file=str(kubeconfig), context="chaosaa-test-eu")
    try:
        control_planes.assert_owned_client(api)
        assert k8s.CoreV1Api(api).list_namespace().items
    finally:
        api.close()


def test_kwok_nodes_are_ready_and_labelled_with_region_and_zone(
    kube_clients: dict[str, k8s.ApiClient],
) -> None:
    for region, api in kube_clients.items():
        nodes = k8s.CoreV1Api(api).list_node().items
        assert len(nodes) == 3
        for node in nodes:
            assert node.metadata.labels[REGION_LABEL] == region
            assert node.metadata.labels[ZONE_LABEL].startswith(f"{region}-")
            ready = {c.type: c.status for c in node.status.conditions}["Ready"]
            assert ready == "True", node.metadata.name
        assert len({n.metadata.labels[ZONE_LABEL] for n in nodes}) == 3


def test_deployment_gets_its_replicas_running_in_each_region(
    kube_clients: dict[str, k8s.ApiClient], k8s_namespace: str
) -> None:
    for api in kube_clients.values():
        k8s.AppsV1Api(api).create_namespaced_deployment(k8s_namespace, deployment("web", 2))
    for region, api in kube_clients.items():
        core = k8s.CoreV1Api(api)

        def running_pods(core: k8s.CoreV1Api = core) -> list[k8s.V1Pod] | None:
            pods = core.list_namespaced_pod(k8s_namespace, label_selector="app=web").items
            running = [p for p in pods if p.status.phase == "Running"]
            return running if len(running) == 2 else None

        pods = eventually(f"2 running pods in {region}", running_pods)
        nodes = {n.metadata.name: n for n in core.list_node().items}
        for pod in pods:
            assert nodes[pod.spec.node_name].metadata.labels[REGION_LABEL] == region
            # Pod IPs come from the benchmarking range, never from a private or routed one.
            assert ipaddress.ip_address(pod.status.pod_ip) in POD_SUPERNET
        ready = eventually(
            f"deployment ready in {region}",
            lambda api=api: (
                k8s.AppsV1Api(api)
                .read_namespaced_deployment("web", k8s_namespace)
                .status.ready_replicas
                == 2
            ),
        )
        assert ready


def test_service_gets_endpoints_from_running_pods(
    kube_clients: dict[str, k8s.ApiClient], k8s_namespace: str
) -> None:
    api = kube_clients["ap"]
    k8s.AppsV1Api(api).create_namespaced_deployment(k8s_namespace, deployment("db", 2))
    k8s.CoreV1Api(api).create_namespaced_service(
        k8s_namespace,
        k8s.V1Service(
            metadata=k8s.V1ObjectMeta(name="db"),
            spec=k8s.V1ServiceSpec(
                selector={"app": "db"}, ports=[k8s.V1ServicePort(port=5432, target_port=5432)]
            ),
        ),
    )

    def two_ready() -> list[str] | None:
        addresses = ready_endpoints(api, k8s_namespace, "db")
        return addresses if len(addresses) == 2 else None

    addresses = eventually("2 ready endpoints for service db", two_ready)
    assert all(ipaddress.ip_address(a) in POD_SUPERNET for a in addresses)


def test_apiserver_proxy_to_pods_and_services_stays_on_this_machine(
    kube_clients: dict[str, k8s.ApiClient], k8s_namespace: str
) -> None:
    api = kube_clients["us"]
    core = k8s.CoreV1Api(api)
    k8s.AppsV1Api(api).create_namespaced_deployment(k8s_namespace, deployment("web", 1))
    core.create_namespaced_service(
        k8s_namespace,
        k8s.V1Service(
            metadata=k8s.V1ObjectMeta(name="web"),
            spec=k8s.V1ServiceSpec(selector={"app": "web"}, ports=[k8s.V1ServicePort(port=80)]),
        ),
    )
    eventually(
        "a ready endpoint for service web", lambda: ready_endpoints(api, k8s_namespace, "web")
    )
    pod = core.list_namespaced_pod(k8s_namespace, label_selector="app=web").items[0]
    # The apiserver would dial the pod IP (198.18.x.y) here; its HTTPS_PROXY sends the
    # attempt to a closed loopback port instead, so nothing leaves the machine.
    proxies: list[Callable[[], object]] = [
        lambda: core.connect_get_namespaced_service_proxy_with_path("web", k8s_namespace, "x"),
        lambda: core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod.metadata.name}:80", k8s_namespace, "x"
        ),
    ]
    for call in proxies:
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 503
        assert "127.0.0.1:1" in str(err.value.body)


def test_server_side_dry_run_validates_without_persisting(
    kube_clients: dict[str, k8s.ApiClient], k8s_namespace: str
) -> None:
    apps = k8s.AppsV1Api(kube_clients["us"])
    created = apps.create_namespaced_deployment(k8s_namespace, deployment("dry", 1), dry_run="All")
    # Server-side defaulting happened (a real admission round trip) ...
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.metadata.uid
    # ... but nothing was stored.
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("dry", k8s_namespace)
    assert missing.value.status == 404
    # An invalid manifest is rejected by the same dry run.
    bad = deployment("Bad_Name", 1)
    with pytest.raises(ApiException) as invalid:
        apps.create_namespaced_deployment(k8s_namespace, bad, dry_run="All")
    assert invalid.value.status == 422


def test_service_account_token_is_bound_by_rbac(
    control_planes: ControlPlanes, kube_clients: dict[str, k8s.ApiClient], k8s_namespace: str
) -> None:
    admin = kube_clients["eu"]
    core = k8s.CoreV1Api(admin)
    rbac = k8s.RbacAuthorizationV1Api(admin)
    core.create_namespaced_service_account(
        k8s_namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="reader"))
    )
    rbac.create_namespaced_role(
        k8s_namespace,
        k8s.V1Role(
            metadata=k8s.V1ObjectMeta(name="pod-reader"),
            rules=[k8s.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        k8s_namespace,
        k8s.V1RoleBinding(
            metadata=k8s.V1ObjectMeta(name="reader"),
            role_ref=k8s.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
            ),
            subjects=[
                k8s.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=k8s_namespace)
            ],
        ),
    )
    token = control_planes.service_account_token("eu", k8s_namespace, "reader")
    sa = control_planes.token_client("eu", token)

    review = k8s.AuthenticationV1Api(sa).create_self_subject_review(k8s.V1SelfSubjectReview())
    assert review.status.user_info.username == f"system:serviceaccount:{k8s_namespace}:reader"

    # Allowed: what the Role grants (RBAC bindings take effect immediately).
    k8s.CoreV1Api(sa).list_namespaced_pod(k8s_namespace)

    # Denied: other verbs, other namespaces, cluster-scoped resources.
    denied: list[Callable[[], object]] = [
        lambda: k8s.CoreV1Api(sa).list_namespaced_pod("default"),
        lambda: k8s.CoreV1Api(sa).list_node(),
        lambda: k8s.CoreV1Api(sa).list_namespaced_secret(k8s_namespace),
        lambda: k8s.AppsV1Api(sa).create_namespaced_deployment(
            k8s_namespace, deployment("nope", 1)
        ),
    ]
    for call in denied:
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 403

    # A token from one region means nothing to another region's apiserver.
    foreign = control_planes.token_client("us", token)
    with pytest.raises(ApiException) as unauth:
        k8s.CoreV1Api(foreign).list_namespaced_pod(k8s_namespace)
    assert unauth.value.status == 401


def test_deleted_namespace_is_emptied_and_removed(
    kube_clients: dict[str, k8s.ApiClient],
) -> None:
    core = k8s.CoreV1Api(kube_clients["ap"])
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="short-lived")))
    core.create_namespaced_config_map(
        "short-lived", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="c"), data={"k": "v"})
    )
    core.delete_namespace("short-lived")

    def gone() -> bool:
        try:
            core.read_namespace("short-lived")
        except ApiException as exc:
            return exc.status == 404
        return False

    eventually("namespace short-lived to be deleted", gone)


def test_contexts_not_created_by_the_fixture_are_refused(
    control_planes: ControlPlanes, tmp_path: Path
) -> None:
    with pytest.raises(ForeignContextError):
        control_planes.api_client("prod-us")
    with pytest.raises(ForeignContextError):
        control_planes.assert_owned("chaosaa-test-us", "https://prod.example.com:6443")
    # A same-named context pointing elsewhere, e.g. from a user's own kubeconfig.
    elsewhere = k8s.Configuration()
    elsewhere.host = "https://10.0.0.1:6443"
    stray = k8s.ApiClient(elsewhere)
    try:
        with pytest.raises(ForeignContextError):
            control_planes.assert_owned_client(stray)
    finally:
        stray.close()


@pytest.mark.timeout(180)
def test_stop_leaves_no_process_and_no_files(k8s_bin_dir: Path) -> None:
    planes = ControlPlanes(k8s_bin_dir, ["solo"], nodes_per_region=1)
    planes.start()
    pids = [p.popen.pid for p in planes.processes() if p.popen is not None]
    assert len(pids) == 5
    assert planes.leftover_processes()
    planes.stop()
    assert not planes.leftover_processes()
    assert not planes.base_dir.exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()


@pytest.mark.timeout(180)
def test_start_moves_to_fresh_ports_when_one_was_taken_meanwhile(
    k8s_bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_free_ports = controlplane.free_ports
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        calls: list[list[int]] = []

        def free_ports(count: int) -> list[int]:
            # The first layout gets etcd's client port stolen before etcd binds it.
            ports = real_free_ports(count)
            if not calls:
                ports[0] = taken
            calls.append(ports)
            return ports

        monkeypatch.setattr(controlplane, "free_ports", free_ports)
        planes = ControlPlanes(k8s_bin_dir, ["solo"], nodes_per_region=1)
        try:
            planes.start()
            assert len(calls) == 2
            assert planes.regions["solo"].etcd_client_port != taken
        finally:
            planes.stop()
