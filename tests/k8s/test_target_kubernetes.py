"""The kubernetes target against real control planes (3 regions, kwok nodes).

regionDown scales to 0 and back to the exact replicas (also when the run is cancelled,
SIGTERMed, or crashed and rolled back); NetworkPolicies appear and disappear; the
blast-radius guard refuses protected namespaces and un-allowlisted contexts before
anything is touched; the Lease refuses a second concurrent run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from chaosaa.agent.agent import Agent, AgentConfig
from chaosaa.engine import faults
from chaosaa.engine.run import Run
from chaosaa.errors import FaultError, LeaseHeldError, SafetyError
from chaosaa.rules.resource import ANN_EXPIRES, ANN_REPLICAS
from chaosaa.spec.loader import validate_gameday
from chaosaa.targets.base import AppliedFault, TargetOptions
from chaosaa.targets.kubernetes import LEASE_NAME, KubernetesTarget
from tests.k8s.controlplane import ControlPlanes

REGIONS = ("us", "eu", "ap")
#: the discard port: the URL of targets whose runs send no traffic
NO_SERVICE = "http://127.0.0.1:9"
#: the fault most tests inject: region eu scaled down
EU_DOWN: dict[str, Any] = {"name": "eu-down", "type": "regionDown", "regions": ["eu"]}


# --------------------------------------------------------------------------- helpers


class _Handler(BaseHTTPRequestHandler):
    def _ok(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b"ok"
        self.send_response(200)
        self.send_header("X-Chaosaa-Region", "us")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_DELETE = _ok

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    """A KV-ish HTTP service on 127.0.0.1 for the runs' traffic (always answers 200)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def eu(kube_clients: dict[str, k8s.ApiClient]) -> k8s.ApiClient:
    return kube_clients["eu"]


@pytest.fixture
def eu_workloads(eu: k8s.ApiClient, k8s_namespace: str) -> Workloads:
    """The workloads of :func:`make_workloads`, running in region eu before the test acts."""
    return make_workloads(eu, k8s_namespace)


def contexts(planes: ControlPlanes) -> list[str]:
    return [planes.context(r) for r in REGIONS]


def gameday_doc(
    planes: ControlPlanes, ns: str, url: str, name: str = "k8s-test", **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "target": {
            "kind": "kubernetes",
            "url": url,
            "regions": {r: {"context": planes.context(r), "namespace": ns} for r in REGIONS},
        },
        "traffic": {"rate": 5, "warmup": "0s"},
        "recovery": {"settle": "0s", "convergenceTimeout": "1s"},
        "faults": [{**EU_DOWN, "duration": "2s"}],
        "slos": [{"name": "errors", "type": "errorRate", "max": 1}],
    }
    body.update(spec)
    return {"apiVersion": "chaosaa.io/v1alpha1", "kind": "GameDay", "metadata": {"name": name},
            "spec": body}  # fmt: skip


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def chaosaa(*args: str, allow: list[str], **kw: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "CHAOSAA_ALLOWED_CONTEXTS": " ".join(allow)}
    return subprocess.Popen(
        [sys.executable, "-m", "chaosaa.cli.main", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def run_cli(tmp_path: Path, doc: dict[str, Any], allow: list[str]) -> tuple[int, str]:
    """``chaosaa run`` of ``doc`` to completion, its report in ``tmp_path/r``."""
    path = write(tmp_path, doc)
    return finish(
        chaosaa("run", str(path), "--plain", "--report-dir", str(tmp_path / "r"), allow=allow)
    )


def read_report(tmp_path: Path) -> Any:
    return json.loads((tmp_path / "r" / "report.json").read_text())


def target(planes: ControlPlanes, ns: str, url: str, run_id: str, **kw: Any) -> KubernetesTarget:
    gd = validate_gameday(gameday_doc(planes, ns, url), "t.yaml")
    opts = TargetOptions(run_id=run_id, allowed_contexts=tuple(contexts(planes)), **kw)
    t = KubernetesTarget(gd.spec.target, opts)
    t.check(list(gd.spec.faults))
    return t


async def opened(planes: ControlPlanes, ns: str, url: str, run_id: str) -> KubernetesTarget:
    t = target(planes, ns, url, run_id)
    await t.open()
    return t


async def inject_verified(t: KubernetesTarget, f: Any, ttl: float) -> AppliedFault:
    """Inject ``f`` and wait until the target verifies its effect."""
    applied = await t.inject(f, ttl)
    await until(lambda: t.verify_effect(applied))
    return applied


def fault(**body: Any) -> Any:
    doc = {
        "apiVersion": "chaosaa.io/v1alpha1",
        "kind": "GameDay",
        "metadata": {"name": "f"},
        "spec": {
            "target": {"kind": "lab", "regions": {r: {} for r in REGIONS}},
            "faults": [{"duration": "10s", **body}],
        },
    }
    return validate_gameday(doc, "f.yaml").spec.faults[0]


Workloads = dict[tuple[str, str], int]


def make_workloads(api: k8s.ApiClient, ns: str) -> Workloads:
    """Deployments of 3 and 5 replicas, a StatefulSet of 2, and one already at 0."""
    apps = k8s.AppsV1Api(api)
    want: Workloads = {("Deployment", "web"): 3, ("Deployment", "api"): 5,
                       ("StatefulSet", "db"): 2, ("Deployment", "idle"): 0}  # fmt: skip
    for (kind, name), replicas in want.items():
        labels = {"app": name}
        spec: dict[str, Any] = {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:1"}]},
            },
        }
        body = {"metadata": {"name": name}, "spec": spec}
        if kind == "Deployment":
            apps.create_namespaced_deployment(ns, body, _request_timeout=10)
        else:
            spec["serviceName"] = name
            apps.create_namespaced_stateful_set(ns, body, _request_timeout=10)
    wait(lambda: running_pods(api, ns) == 10, 60, "pods running")
    return want


def assert_restored(api: k8s.ApiClient, ns: str, want: Workloads) -> None:
    """Every workload is back at its replicas and chaosaa left no mark behind."""
    assert replicas(api, ns) == want
    assert chaosaa_marks(api, ns) == []


@contextlib.contextmanager
def node_addresses(clients: dict[str, k8s.ApiClient], cidrs: dict[str, str]) -> Iterator[None]:
    """Annotate each region's first node with its addresses, so that placement succeeds."""
    for r, c in cidrs.items():
        k8s.CoreV1Api(clients[r]).patch_node(
            f"{r}-node-0", {"metadata": {"annotations": {"chaosaa.io/addresses": c}}}
        )
    try:
        yield
    finally:
        for r in REGIONS:
            k8s.CoreV1Api(clients[r]).patch_node(
                f"{r}-node-0", {"metadata": {"annotations": {"chaosaa.io/addresses": None}}}
            )


def running_pods(api: k8s.ApiClient, ns: str) -> int:
    pods = k8s.CoreV1Api(api).list_namespaced_pod(ns, _request_timeout=10).items
    return sum(1 for p in pods if p.status and p.status.phase == "Running")


def serving_pods(api: k8s.ApiClient, ns: str) -> int:
    """Pods not being deleted: the ones a Service still sends traffic to."""
    pods = k8s.CoreV1Api(api).list_namespaced_pod(ns, _request_timeout=10).items
    return sum(1 for p in pods if p.metadata.deletion_timestamp is None)


def replicas(api: k8s.ApiClient, ns: str) -> Workloads:
    apps = k8s.AppsV1Api(api)
    out: Workloads = {}
    for d in apps.list_namespaced_deployment(ns, _request_timeout=10).items:
        out[("Deployment", d.metadata.name)] = d.spec.replicas
    for s in apps.list_namespaced_stateful_set(ns, _request_timeout=10).items:
        out[("StatefulSet", s.metadata.name)] = s.spec.replicas
    return out


def chaosaa_marks(api: k8s.ApiClient, ns: str) -> list[str]:
    """Every chaosaa label/annotation left on workloads and nodes, and our policies."""
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    found = []
    objs = [*apps.list_namespaced_deployment(ns, _request_timeout=10).items,
            *apps.list_namespaced_stateful_set(ns, _request_timeout=10).items,
            *core.list_node(_request_timeout=10).items]  # fmt: skip
    for o in objs:
        marks = {**(o.metadata.labels or {}), **(o.metadata.annotations or {})}
        found += [f"{o.metadata.name}: {k}" for k in marks if k.startswith("chaosaa.io/")]
        if getattr(o.spec, "unschedulable", None):
            found.append(f"{o.metadata.name}: cordoned")
    pols = k8s.NetworkingV1Api(api).list_namespaced_network_policy(ns, _request_timeout=10)
    found += [f"policy {p.metadata.name}" for p in pols.items]
    return found


def wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def until(check: Callable[[], Any]) -> None:
    """Poll an async predicate for up to 15 s."""
    for _ in range(300):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met within 15s")


# --------------------------------------------------------------------------- regionDown


async def test_region_down_scales_to_zero_and_back_to_the_exact_replicas(
    control_planes: ControlPlanes,
    kube_clients: dict[str, k8s.ApiClient],
    eu: k8s.ApiClient,
    eu_workloads: Workloads,
    k8s_namespace: str,
) -> None:
    core = k8s.CoreV1Api(eu)
    core.patch_node("eu-node-2", {"spec": {"unschedulable": True}}, _request_timeout=10)
    try:
        t = await opened(control_planes, k8s_namespace, NO_SERVICE, "rd-exact")
        applied = await inject_verified(t, fault(**EU_DOWN), 10)
        assert set(replicas(eu, k8s_namespace).values()) == {0}
        assert serving_pods(eu, k8s_namespace) == 0  # deleted or being deleted
        wait(lambda: running_pods(eu, k8s_namespace) == 0, 30, "pods gone")
        nodes = {n.metadata.name: n for n in core.list_node(_request_timeout=10).items}
        assert all(n.spec.unschedulable for n in nodes.values())
        web = k8s.AppsV1Api(eu).read_namespaced_deployment("web", k8s_namespace)
        assert web.metadata.annotations[ANN_REPLICAS] == "3"
        assert ANN_EXPIRES in web.metadata.annotations
        assert ("eu", "eu-node-2") not in applied.state.nodes  # someone else's cordon
        # the other regions are untouched
        assert replicas(kube_clients["us"], k8s_namespace) == {}
        await t.renew(applied, 10)
        await t.revert(applied)
        await until(lambda: t.verify_reverted(applied))
        assert replicas(eu, k8s_namespace) == eu_workloads
        assert chaosaa_marks(eu, k8s_namespace) == ["eu-node-2: cordoned"]
        wait(lambda: running_pods(eu, k8s_namespace) == 10, 60, "pods back")
    finally:
        core.patch_node("eu-node-2", {"spec": {"unschedulable": None}}, _request_timeout=10)


async def test_region_down_is_restored_when_the_run_is_cancelled(
    control_planes: ControlPlanes,
    eu: k8s.ApiClient,
    eu_workloads: Workloads,
    k8s_namespace: str,
    service: str,
) -> None:
    doc = gameday_doc(
        control_planes,
        k8s_namespace,
        service,
        faults=[{**EU_DOWN, "duration": "60s"}],
    )
    gd = validate_gameday(doc, "cancel.yaml")
    run = Run(gd, TargetOptions(allowed_contexts=tuple(contexts(control_planes))))
    task = asyncio.create_task(run.execute())
    deadline = time.monotonic() + 30
    while not (run.outcome.faults and run.outcome.faults[0].effective_at):
        assert time.monotonic() < deadline and not task.done(), run.outcome.reason
        await asyncio.sleep(0.05)
    assert set(replicas(eu, k8s_namespace).values()) == {0}
    task.cancel()
    outcome = await task
    assert outcome.exit_code == 3 and outcome.faults[0].reverted_at is not None
    assert_restored(eu, k8s_namespace, eu_workloads)
    lease = k8s.CoordinationV1Api(eu).list_namespaced_lease(k8s_namespace, _request_timeout=10)
    assert [item.metadata.name for item in lease.items] == []  # released


async def unverified_region_down(
    planes: ControlPlanes, ns: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Run EU_DOWN with a 3 s verification limit; it must fail (exit 4): its reason."""
    monkeypatch.setattr(faults, "VERIFY_TIMEOUT", 3.0)
    gd = validate_gameday(gameday_doc(planes, ns, url), "unverified.yaml")
    outcome = await Run(gd, TargetOptions(allowed_contexts=tuple(contexts(planes)))).execute()
    assert outcome.exit_code == 4 and outcome.reason is not None
    return outcome.reason


async def test_a_region_that_does_not_go_down_fails_naming_what_still_serves(
    control_planes: ControlPlanes,
    eu: k8s.ApiClient,
    eu_workloads: Workloads,
    k8s_namespace: str,
    service: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A bare pod that matches Deployment web's selector but no ReplicaSet's (those also
    # select on pod-template-hash): scaling to 0 never removes it, so the region keeps
    # serving through the Service and the fault must not be called effective.
    core = k8s.CoreV1Api(eu)
    stray = {
        "metadata": {"name": "stray-web", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:1"}]},
    }
    core.create_namespaced_pod(k8s_namespace, stray, _request_timeout=10)
    reason = await unverified_region_down(control_planes, k8s_namespace, service, monkeypatch)
    assert "effect: not verified within 3s; still waiting for: " in reason
    assert f"eu/Deployment/{k8s_namespace}/web: 1 pod(s) not being deleted" in reason
    assert "api" not in reason  # the workloads that did go down are not named
    assert_restored(eu, k8s_namespace, eu_workloads)


async def test_a_statefulset_with_pods_not_ready_is_named_with_the_rule_that_holds_it(
    control_planes: ControlPlanes,
    eu: k8s.ApiClient,
    eu_workloads: Workloads,
    k8s_namespace: str,
    service: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both db pods lose readiness (as a node lifecycle controller would set it): an
    # OrderedReady StatefulSet then does not delete them when scaled to 0.
    core = k8s.CoreV1Api(eu)
    for pod in core.list_namespaced_pod(k8s_namespace, label_selector="app=db").items:
        conditions = [
            {"type": c.type, "status": "False" if c.type == "Ready" else c.status}
            for c in pod.status.conditions
        ]
        body = {"status": {"conditions": conditions}}
        core.patch_namespaced_pod_status(pod.metadata.name, k8s_namespace, body)
    reason = await unverified_region_down(control_planes, k8s_namespace, service, monkeypatch)
    assert (
        f"eu/StatefulSet/{k8s_namespace}/db: 2 pod(s) not being deleted (an OrderedReady "
        "StatefulSet may not scale down while its pods are not Ready)"
    ) in reason
    assert "Deployment" not in reason
    assert_restored(eu, k8s_namespace, eu_workloads)


def test_sigterm_to_chaosaa_run_restores_the_region(
    control_planes: ControlPlanes,
    eu: k8s.ApiClient,
    eu_workloads: Workloads,
    k8s_namespace: str,
    service: str,
    tmp_path: Path,
) -> None:
    doc = gameday_doc(
        control_planes,
        k8s_namespace,
        service,
        name="sigterm",
        faults=[{**EU_DOWN, "duration": "60s"}],
    )
    proc = chaosaa(
        "run", str(write(tmp_path, doc)), "--plain", "--report-dir", str(tmp_path / "r"),
        allow=contexts(control_planes),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # until the fault is verified in place
            seen.append(line)
            if "fault eu-down in place" in line:
                break
        assert set(replicas(eu, k8s_namespace).values()) == {0}, "".join(seen)
        proc.send_signal(signal.SIGTERM)
        code, out = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 3, out
    assert_restored(eu, k8s_namespace, eu_workloads)
    report = read_report(tmp_path)
    assert report["verdict"] == "aborted" and report["faults"][0]["revertedAt"]


async def test_an_injection_interrupted_midway_is_undone(
    control_planes: ControlPlanes,
    eu: k8s.ApiClient,
    eu_workloads: Workloads,
    k8s_namespace: str,
) -> None:
    t = await opened(control_planes, k8s_namespace, NO_SERVICE, "interrupted")
    task = asyncio.create_task(t.inject(fault(**EU_DOWN), 10))
    for _ in range(2000):  # until the first workload is at 0
        if any(v == 0 for k, v in replicas(eu, k8s_namespace).items() if k[1] != "idle"):
            break
        await asyncio.sleep(0.005)
    task.cancel()  # SIGTERM while the scale-down is half done
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_restored(eu, k8s_namespace, eu_workloads)


def test_rollback_restores_a_crashed_runs_scale_down_and_policies(
    control_planes: ControlPlanes,
    eu: k8s.ApiClient,
    eu_workloads: Workloads,
    k8s_namespace: str,
    service: str,
    tmp_path: Path,
) -> None:

    async def crash() -> None:  # inject, then vanish without reverting
        t = await opened(control_planes, k8s_namespace, service, "crashed-run")
        await t.acquire_lease("crashed-run", 60)
        down = await t.inject(fault(**EU_DOWN), 60)
        dark = await t.inject(fault(name="eu-dark", type="blackhole", regions=["eu"]), 60)
        await until(lambda: t.verify_effect(down))
        assert await t.verify_effect(dark)

    asyncio.run(crash())
    assert len(chaosaa_marks(eu, k8s_namespace)) > 5
    path = write(tmp_path, gameday_doc(control_planes, k8s_namespace, service, name="gd"))
    code, out = finish(chaosaa("rollback", str(path), allow=contexts(control_planes)))
    assert code == 0, out
    assert "replicas restored to 3" in out and "uncordoned" in out
    assert "NetworkPolicy" in out and "Lease" in out
    assert_restored(eu, k8s_namespace, eu_workloads)
    code, out = finish(chaosaa("rollback", str(path), allow=contexts(control_planes)))
    assert code == 0 and "nothing to roll back" in out


def test_rollback_without_a_file_cleans_the_allowlisted_contexts(
    control_planes: ControlPlanes,
    kube_clients: dict[str, k8s.ApiClient],
    k8s_namespace: str,
) -> None:
    async def crash() -> None:
        t = await opened(control_planes, k8s_namespace, NO_SERVICE, "crashed-2")
        await t.inject(fault(name="dark", type="blackhole", regions=["ap"]), 60)

    asyncio.run(crash())
    assert chaosaa_marks(kube_clients["ap"], k8s_namespace)
    code, out = finish(chaosaa("rollback", "--target", "kubernetes", allow=[]))
    assert code == 2 and "--allow-context" in out
    ap = control_planes.context("ap")
    code, out = finish(chaosaa("rollback", "--target", "kubernetes", "--allow-context", ap,
                               allow=[]))  # fmt: skip
    assert code == 0, out
    assert f"NetworkPolicy {k8s_namespace}/" in out
    assert chaosaa_marks(kube_clients["ap"], k8s_namespace) == []


async def test_expired_leftovers_are_restored_by_the_next_runs_preflight(
    control_planes: ControlPlanes,
    eu: k8s.ApiClient,
    eu_workloads: Workloads,
    k8s_namespace: str,
) -> None:
    dead = await opened(control_planes, k8s_namespace, NO_SERVICE, "dead-run")
    await inject_verified(dead, fault(**EU_DOWN), 1.0)
    await asyncio.sleep(1.2)  # the runner "died": no renewal, the expiry passes
    nxt = await opened(control_planes, k8s_namespace, NO_SERVICE, "next-run")
    await nxt.acquire_lease("next-run", 15)
    try:
        assert_restored(eu, k8s_namespace, eu_workloads)
    finally:
        await nxt.release_lease("next-run")


async def test_janitor_restores_an_expired_scale_down_by_itself(
    control_planes: ControlPlanes,
    eu: k8s.ApiClient,
    eu_workloads: Workloads,
    k8s_namespace: str,
) -> None:
    dead = await opened(control_planes, k8s_namespace, NO_SERVICE, "dead-run-2")
    t_dead = time.monotonic()  # the expiry is set when the fault is injected
    await inject_verified(dead, fault(**EU_DOWN), 2.0)
    stop = asyncio.Event()
    janitor = Agent(AgentConfig(node=None, janitor=True, janitor_interval=0.5), eu)
    task = asyncio.create_task(janitor.run(stop))
    try:
        while replicas(eu, k8s_namespace) != eu_workloads:
            assert time.monotonic() - t_dead < 10, "the janitor did not restore the region"
            await asyncio.sleep(0.1)
        restored_after = time.monotonic() - t_dead
        # the same janitor pass uncordons the nodes: wait for it before stopping the janitor
        while chaosaa_marks(eu, k8s_namespace):
            assert time.monotonic() - t_dead < 15, chaosaa_marks(eu, k8s_namespace)
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task
    assert 1.9 <= restored_after <= 2.0 + 2.5, restored_after
    assert chaosaa_marks(eu, k8s_namespace) == []


# --------------------------------------------------------------------------- blackhole


async def test_blackhole_network_policies_appear_and_disappear(
    control_planes: ControlPlanes, kube_clients: dict[str, k8s.ApiClient], k8s_namespace: str
) -> None:
    t = await opened(control_planes, k8s_namespace, NO_SERVICE, "bh-run")
    net = {r: k8s.NetworkingV1Api(kube_clients[r]) for r in REGIONS}
    applied = await inject_verified(t, fault(name="eu-dark", type="blackhole", regions=["eu"]), 10)
    pols = net["eu"].list_namespaced_network_policy(k8s_namespace, _request_timeout=10).items
    assert len(pols) == 1
    pol = pols[0]
    assert pol.metadata.labels["app.kubernetes.io/managed-by"] == "chaosaa"
    assert pol.metadata.labels["chaosaa.io/run-id"] == "bh-run"
    assert pol.spec.pod_selector.match_labels is None  # every pod
    assert sorted(pol.spec.policy_types) == ["Egress", "Ingress"]
    for r in ("us", "ap"):
        assert not net[r].list_namespaced_network_policy(k8s_namespace, _request_timeout=10).items
    # someone else's policy in the same namespace is left alone
    mine = {"metadata": {"name": "users-own"}, "spec": {"podSelector": {}}}
    net["eu"].create_namespaced_network_policy(k8s_namespace, mine, _request_timeout=10)
    await t.revert(applied)
    await until(lambda: t.verify_reverted(applied))
    left = net["eu"].list_namespaced_network_policy(k8s_namespace, _request_timeout=10).items
    assert [p.metadata.name for p in left] == ["users-own"]


async def test_partition_policies_cut_the_other_groups_addresses(
    control_planes: ControlPlanes, kube_clients: dict[str, k8s.ApiClient], k8s_namespace: str
) -> None:
    cidrs = {"us": "10.10.0.0/16", "eu": "10.20.0.0/16", "ap": "10.30.0.0/16"}
    with node_addresses(kube_clients, cidrs):
        t = await opened(control_planes, k8s_namespace, NO_SERVICE, "split")
        f = fault(name="split", type="blackhole", partition=[["us"], ["eu", "ap"]])
        applied = await inject_verified(t, f, 10)
        api = k8s.NetworkingV1Api(kube_clients["eu"])
        pol = api.list_namespaced_network_policy(k8s_namespace, _request_timeout=10).items[0]
        blocks = [p.ip_block for p in pol.spec.ingress[0].var_from if p.ip_block]
        assert blocks[0].cidr == "0.0.0.0/0" and blocks[0].var_except == [cidrs["us"]]
        await t.revert(applied)
        await until(lambda: t.verify_reverted(applied))


# --------------------------------------------------------------------------- safety


def test_a_protected_namespace_is_refused_before_anything_is_touched(
    control_planes: ControlPlanes,
    kube_clients: dict[str, k8s.ApiClient],
    eu: k8s.ApiClient,
    eu_workloads: Workloads,
    k8s_namespace: str,
    service: str,
    tmp_path: Path,
) -> None:
    k8s.CoreV1Api(eu).patch_namespace(
        k8s_namespace, {"metadata": {"labels": {"chaosaa.io/protected": "true"}}}
    )
    doc = gameday_doc(control_planes, k8s_namespace, service, name="protected")
    code, out = run_cli(tmp_path, doc, allow=contexts(control_planes))
    assert code == 2, out
    assert f"namespace {k8s_namespace} in context chaosaa-test-eu is labelled" in out
    assert_restored(eu, k8s_namespace, eu_workloads)
    for r in REGIONS:  # not even the lease was taken
        leases = k8s.CoordinationV1Api(kube_clients[r]).list_namespaced_lease(k8s_namespace)
        assert leases.items == []


def test_a_context_not_allowlisted_is_refused_before_anything_is_touched(
    control_planes: ControlPlanes,
    eu: k8s.ApiClient,
    eu_workloads: Workloads,
    k8s_namespace: str,
    service: str,
    tmp_path: Path,
) -> None:
    doc = gameday_doc(control_planes, k8s_namespace, service, name="not-allowed")
    allow = [control_planes.context("us"), control_planes.context("ap")]
    code, out = run_cli(tmp_path, doc, allow=allow)
    assert code == 2, out
    assert "context(s) chaosaa-test-eu not allowed" in out
    assert_restored(eu, k8s_namespace, eu_workloads)
    report = read_report(tmp_path)
    assert report["exitCode"] == 2 and report["faults"][0]["effectiveAt"] is None


async def test_a_protected_node_is_refused(
    control_planes: ControlPlanes, kube_clients: dict[str, k8s.ApiClient], k8s_namespace: str
) -> None:
    core = k8s.CoreV1Api(kube_clients["eu"])
    core.patch_node("eu-node-1", {"metadata": {"labels": {"chaosaa.io/protected": "true"}}})
    try:
        t = target(control_planes, k8s_namespace, NO_SERVICE, "prot-node")
        with pytest.raises(SafetyError, match="node eu-node-1 of region eu"):
            await t.open()
    finally:
        core.patch_node("eu-node-1", {"metadata": {"labels": {"chaosaa.io/protected": None}}})


# --------------------------------------------------------------------------- lease


async def test_a_second_concurrent_run_is_refused_by_the_lease(
    control_planes: ControlPlanes,
    kube_clients: dict[str, k8s.ApiClient],
    k8s_namespace: str,
    service: str,
    tmp_path: Path,
) -> None:
    first = await opened(control_planes, k8s_namespace, service, "first-run")
    await first.acquire_lease("first-run", 30)
    try:
        second = await opened(control_planes, k8s_namespace, service, "second-run")
        with pytest.raises(LeaseHeldError, match="run 'first-run' holds the lease"):
            await second.acquire_lease("second-run", 30)
        # the loser keeps nothing: the first run still holds every region
        for r in REGIONS:
            lease = k8s.CoordinationV1Api(kube_clients[r]).read_namespaced_lease(
                LEASE_NAME, k8s_namespace
            )
            assert lease.spec.holder_identity == "first-run"
        doc = gameday_doc(control_planes, k8s_namespace, service, name="second")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chaosaa.cli.main", "run", str(write(tmp_path, doc)),
            "--plain", "--report-dir", str(tmp_path / "r"),
            "--allow-context", " ".join(contexts(control_planes)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out = (await asyncio.wait_for(proc.communicate(), 90))[0].decode()
        assert proc.returncode == 4, out
        assert "holds the lease" in out and "first-run" in out
    finally:
        await first.release_lease("first-run")


async def test_an_expired_lease_is_taken_over(
    control_planes: ControlPlanes, k8s_namespace: str
) -> None:
    dead = await opened(control_planes, k8s_namespace, NO_SERVICE, "dead")
    await dead.acquire_lease("dead", 1)
    await asyncio.sleep(1.3)
    alive = await opened(control_planes, k8s_namespace, NO_SERVICE, "alive")
    await alive.acquire_lease("alive", 15)
    await alive.release_lease("alive")


# --------------------------------------------------------------------------- node faults


async def test_node_faults_without_agents_fail_naming_the_nodes(
    control_planes: ControlPlanes, kube_clients: dict[str, k8s.ApiClient], k8s_namespace: str
) -> None:
    with node_addresses(kube_clients, {r: f"10.{i}.0.0/16" for i, r in enumerate(REGIONS)}):
        t = await opened(control_planes, k8s_namespace, NO_SERVICE, "no-agent")
        with pytest.raises(FaultError, match=r"needs the chaosaa agent on every node.*eu-node-0"):
            await t.inject(fault(name="slow", type="latency", regions=["eu"], delay="100ms"), 10)


def test_plan_names_every_namespace_and_node_set(
    control_planes: ControlPlanes, k8s_namespace: str
) -> None:
    t = target(control_planes, k8s_namespace, NO_SERVICE, "plan")
    actions = t.plan(fault(**EU_DOWN))
    assert [a.scope for a in actions] == [
        f"namespace {k8s_namespace}@chaosaa-test-eu",
        "nodes of region eu (context chaosaa-test-eu)",
    ]
