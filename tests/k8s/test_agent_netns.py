"""The node agent with a real API server and real network namespaces (root).

Two namespaces joined by a veth pair stand in for a node (where the agent applies its
rules, ``--netns``) and a peer; the effect of each NetworkFault is observed with real
traffic from the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from chaosaa.agent.agent import Agent, AgentConfig
from chaosaa.agent.crd import networkfault_crd
from chaosaa.agent.node import NodeShell
from chaosaa.rules import NodeFault, execute, rules_for
from chaosaa.rules import resource as nf
from chaosaa.spec.loader import validate_gameday
from chaosaa.targets.base import TargetOptions
from chaosaa.targets.kubernetes import KubernetesTarget
from tests.k8s.controlplane import ControlPlanes
from tests.netns.helpers import (
    Link,
    Netns,
    can_connect,
    delete_netns,
    leftover_namespaces,
    linked_pair,
    measure_rate,
    netem_unavailable,
    new_netns,
    require_root_networking,
    tcp_server,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

NODE = "us-node-0"


# --------------------------------------------------------------------------- fixtures


def install_crd(api: k8s.ApiClient) -> None:
    ext = k8s.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(networkfault_crd(), _request_timeout=10)
    except ApiException as exc:
        if exc.status != 409:
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition("networkfaults.chaosaa.io", _request_timeout=10)
        conds = (crd.status.conditions if crd.status else None) or []
        if any(c.type == "Established" and c.status == "True" for c in conds):
            return
        time.sleep(0.1)
    raise AssertionError("NetworkFault CRD not established")


def ensure_namespace(api: k8s.ApiClient, name: str) -> None:
    try:
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": name}}, _request_timeout=10)
    except ApiException as exc:
        if exc.status != 409:
            raise


@pytest.fixture(scope="module")
def clusters(
    control_planes: ControlPlanes, kube_clients: dict[str, k8s.ApiClient]
) -> dict[str, k8s.ApiClient]:
    require_root_networking()
    for api in kube_clients.values():
        install_crd(api)
        ensure_namespace(api, nf.AGENT_NAMESPACE)
    return kube_clients


@pytest.fixture
def link() -> Iterator[Link]:
    require_root_networking()
    before = set(leftover_namespaces())
    with linked_pair(subnet=7) as pair:
        yield pair
    assert set(leftover_namespaces()) <= before


@contextlib.asynccontextmanager
async def running_agent(api: k8s.ApiClient, node: str, netns: str) -> AsyncIterator[Agent]:
    agent = Agent(AgentConfig(node=node, netns=netns, heartbeat=1.0), api)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await asyncio.wait_for(agent.ready.wait(), 30)
    try:
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def objs(api: k8s.ApiClient) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(api)


def create(api: k8s.ApiClient, fault: NodeFault, ttl: float = 30, node: str = NODE) -> str:
    body = nf.network_fault(
        fault, node=node, run_id="agent-test", fault_name=fault.key, ttl=ttl, now=time.time()
    )
    objs(api).create_cluster_custom_object(nf.GROUP, nf.VERSION, nf.PLURAL, body)
    return str(body["metadata"]["name"])


def get(api: k8s.ApiClient, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = objs(api).get_cluster_custom_object(
            nf.GROUP, nf.VERSION, nf.PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def phase(api: k8s.ApiClient, name: str) -> str | None:
    obj = get(api, name)
    return ((obj or {}).get("status") or {}).get("phase")


def delete(api: k8s.ApiClient, name: str) -> None:
    with contextlib.suppress(ApiException):
        objs(api).delete_cluster_custom_object(nf.GROUP, nf.VERSION, nf.PLURAL, name)


async def until(check: Callable[[], Any], limit: float = 15, what: str = "") -> float:
    """Poll a sync predicate (in a thread: it calls the API); return seconds taken."""
    start = time.monotonic()
    for _ in range(int(limit / 0.02)):
        if await asyncio.to_thread(check):
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {limit}s: {what}")


def chains(ns: Netns) -> str:
    return ns.run("nft", "list", "table", "inet", "chaosaa", check=False).stdout


def snapshot(ns: Netns, device: str) -> str:
    import re

    out = ns.ruleset() + ns.qdiscs(device)
    return re.sub(r"direct_packets_stat \d+ ", "", out)


# --------------------------------------------------------------------------- tests


async def test_blackhole_network_fault_cuts_tcp_and_deleting_it_restores(
    clusters: dict[str, k8s.ApiClient], link: Link
) -> None:
    api = clusters["us"]
    before = snapshot(link.node, link.node_dev)
    with tcp_server(link.node, link.node_ip, 7000):
        assert can_connect(link.peer, link.node_ip, 7000)
        async with running_agent(api, NODE, link.node.name):
            name = create(api, NodeFault(key="bh1", type="blackhole", peers=(link.peer_ip,)))
            took = await until(lambda: phase(api, name) == "Applied", what="Applied")
            obj = get(api, name)
            assert obj is not None and nf.FINALIZER in obj["metadata"]["finalizers"]
            assert obj["status"]["node"] == NODE and obj["status"]["appliedAt"]
            assert not await asyncio.to_thread(can_connect, link.peer, link.node_ip, 7000)
            await asyncio.to_thread(delete, api, name)
            gone = await until(lambda: get(api, name) is None, what="deleted")
            assert await asyncio.to_thread(can_connect, link.peer, link.node_ip, 7000)
    assert snapshot(link.node, link.node_dev) == before
    assert took < 2 and gone < 2


async def test_rules_are_gone_within_ttl_plus_1s_when_the_expiry_is_not_renewed(
    clusters: dict[str, k8s.ApiClient], link: Link
) -> None:
    api = clusters["us"]
    ttl = 2.0
    async with running_agent(api, NODE, link.node.name):
        name = create(api, NodeFault(key="dm1", type="blackhole", peers=(link.peer_ip,)), ttl=ttl)
        try:
            await until(lambda: phase(api, name) == "Applied", what="Applied")
            for _ in range(4):  # the runner renews: the fault stays
                await asyncio.sleep(0.5)
                await asyncio.to_thread(
                    objs(api).patch_cluster_custom_object,
                    nf.GROUP, nf.VERSION, nf.PLURAL, name, nf.renewal(ttl, time.time()),
                )  # fmt: skip
                last_renewal = time.monotonic()
                assert "chain cdm1_e" in chains(link.node)
            # the runner dies: no more renewals
            await until(lambda: "cdm1" not in chains(link.node), limit=ttl + 3, what="revert")
            reverted_after = time.monotonic() - last_renewal
            await until(lambda: phase(api, name) == "Reverted", what="status")
            obj = get(api, name)
            assert obj is not None and obj["status"]["reason"] == "Expired"
            # a late renewal does not bring an expired fault back
            objs(api).patch_cluster_custom_object(
                nf.GROUP, nf.VERSION, nf.PLURAL, name, nf.renewal(ttl, time.time())
            )
            await asyncio.sleep(0.5)
            assert "cdm1" not in chains(link.node)
        finally:
            delete(api, name)
            await until(lambda: get(api, name) is None, what="deleted")
    assert reverted_after <= ttl + 1.0, f"reverted {reverted_after:.2f}s after the last renewal"


async def test_bandwidth_network_fault_is_measured_within_20_percent(
    clusters: dict[str, k8s.ApiClient], link: Link
) -> None:
    api = clusters["us"]
    limit = 8e6
    async with running_agent(api, NODE, link.node.name):
        name = create(
            api, NodeFault(key="bw1", type="bandwidth", peers=(link.peer_ip,), rate=limit)
        )
        try:
            await until(lambda: phase(api, name) == "Applied", what="Applied")
            obj = get(api, name)
            assert obj is not None and obj["status"]["device"] == link.node_dev  # by route
            rate = await asyncio.to_thread(
                measure_rate, link.node, link.peer, link.peer_ip, 7100, 5.0
            )
        finally:
            delete(api, name)
            await until(lambda: get(api, name) is None, what="deleted")
    assert 0.8 * limit / 8 <= rate <= 1.2 * limit / 8, f"{rate * 8 / 1e6:.2f} Mbit/s"
    assert "ca05" not in link.node.qdiscs(link.node_dev)


async def test_latency_network_fault(clusters: dict[str, k8s.ApiClient], link: Link) -> None:
    api = clusters["us"]
    missing = netem_unavailable()
    fault = NodeFault(key="lt1", type="latency", peers=(link.peer_ip,), delay=0.1)
    async with running_agent(api, NODE, link.node.name):
        name = create(api, fault)
        try:
            await until(lambda: phase(api, name) in ("Applied", "Failed"), what="a phase")
            obj = get(api, name)
            assert obj is not None
            if missing:
                # the agent says why, and leaves nothing behind
                assert obj["status"]["phase"] == "Failed"
                assert "kernel lacks the netem qdisc" in obj["status"]["message"]
                assert "ca05" not in link.node.qdiscs(link.node_dev)
                pytest.skip(missing)
            assert obj["status"]["phase"] == "Applied"
            with tcp_server(link.peer, link.peer_ip, 7400):
                t0 = time.monotonic()
                assert can_connect(link.node, link.peer_ip, 7400)
                assert time.monotonic() - t0 >= 0.1
        finally:
            delete(api, name)
            await until(lambda: get(api, name) is None, what="deleted")


async def test_foreign_nft_table_and_qdisc_survive_the_agent(
    clusters: dict[str, k8s.ApiClient], link: Link
) -> None:
    api = clusters["us"]
    n = link.node
    n.run("nft", "-f", "-", input="table inet foreign {\n chain c { type filter hook input "
          "priority 0; policy accept; }\n}\n")  # fmt: skip
    n.run("tc", "qdisc", "add", "dev", link.node_dev, "ingress")
    before = snapshot(n, link.node_dev)
    async with running_agent(api, NODE, n.name):
        names = [
            create(api, NodeFault(key="fa1", type="blackhole", peers=("10.99.0.0/16",))),
            create(api, NodeFault(key="fa2", type="bandwidth", peers=(link.peer_ip,), rate=1e7)),
            create(api, NodeFault(key="fa3", type="packetLoss", peers=(link.peer_ip,), percent=1)),
        ]
        for name in names:
            await until(lambda name=name: phase(api, name) == "Applied", what=name)
        assert "table inet foreign" in n.ruleset()
        for name in names:
            delete(api, name)
        for name in names:
            await until(lambda name=name: get(api, name) is None, what="deleted")
    assert snapshot(n, link.node_dev) == before


async def test_agent_start_removes_leftovers_and_reapplies_live_faults(
    clusters: dict[str, k8s.ApiClient], link: Link
) -> None:
    api = clusters["us"]
    # a crashed agent's rules
    stale = rules_for(NodeFault(key="old1", type="bandwidth", peers=("10.9.9.9",), rate=1e6), 9,
                      link.node_dev)  # fmt: skip
    await execute(stale.apply, NodeShell(link.node.name))
    name = create(api, NodeFault(key="live1", type="blackhole", peers=(link.peer_ip,)))
    try:
        async with running_agent(api, NODE, link.node.name):
            await until(lambda: phase(api, name) == "Applied", what="Applied")
            listing = chains(link.node)
            assert "clive1_e" in listing and "old1" not in listing
            assert "ca05:9" not in link.node.qdiscs(link.node_dev)
            delete(api, name)
            await until(lambda: get(api, name) is None, what="deleted")
    finally:
        delete(api, name)


async def test_an_already_expired_fault_is_never_applied(
    clusters: dict[str, k8s.ApiClient], link: Link
) -> None:
    api = clusters["us"]
    body = nf.network_fault(
        NodeFault(key="exp1", type="blackhole", peers=(link.peer_ip,)),
        node=NODE, run_id="dead", fault_name="x", ttl=5, now=time.time() - 60,
    )  # fmt: skip
    objs(api).create_cluster_custom_object(nf.GROUP, nf.VERSION, nf.PLURAL, body)
    name = body["metadata"]["name"]
    try:
        async with running_agent(api, NODE, link.node.name):
            await until(lambda: phase(api, name) == "Reverted", what="Reverted")
            obj = get(api, name)
            assert obj is not None and "expired before it was applied" in obj["status"]["message"]
            assert "exp1" not in chains(link.node)
    finally:
        delete(api, name)


def test_sigterm_makes_the_agent_revert_everything(
    clusters: dict[str, k8s.ApiClient],
    control_planes: ControlPlanes,
    link: Link,
) -> None:
    api = clusters["us"]
    agent = subprocess.Popen(
        [sys.executable, "-m", "chaosaa.cli.main", "agent", "--node", NODE, "--netns",
         link.node.name, "--kubeconfig", str(control_planes.kubeconfig), "--context",
         control_planes.context("us")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CHAOSAA_NAMESPACE": nf.AGENT_NAMESPACE},
    )  # fmt: skip
    name = create(api, NodeFault(key="st1", type="blackhole", peers=(link.peer_ip,)))
    try:
        deadline = time.monotonic() + 30
        while phase(api, name) != "Applied":
            assert time.monotonic() < deadline and agent.poll() is None
            time.sleep(0.05)
        assert "cst1_e" in chains(link.node)
        lease = k8s.CoordinationV1Api(api).read_namespaced_lease(
            nf.agent_lease_name(NODE), nf.AGENT_NAMESPACE
        )
        assert lease.spec.holder_identity == NODE
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
        assert agent.returncode == 0, err
        assert chains(link.node) == ""  # nothing of chaosaa's left
        obj = get(api, name)
        assert obj is not None and obj["status"]["phase"] == "Reverted"
        assert obj["status"]["reason"] == "AgentStopped"
        with pytest.raises(ApiException):
            k8s.CoordinationV1Api(api).read_namespaced_lease(
                nf.agent_lease_name(NODE), nf.AGENT_NAMESPACE
            )
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
        # no agent runs any more: release the finalizer as `chaosaa rollback` would
        with contextlib.suppress(ApiException):
            objs(api).patch_cluster_custom_object(
                nf.GROUP, nf.VERSION, nf.PLURAL, name, {"metadata": {"finalizers": None}}
            )
        delete(api, name)


# --------------------------------------------------------------------------- with the target


@pytest.fixture
def eu_nodes() -> Iterator[dict[str, Netns]]:
    """One namespace per eu node, each with a veth pair so that tc has a device."""
    require_root_networking()
    spaces: dict[str, Netns] = {}
    try:
        for i in range(3):
            ns = new_netns()
            spaces[f"eu-node-{i}"] = ns
            ns.run("ip", "link", "add", "cx-eth0", "type", "veth", "peer", "name", "cx-eth1")
            ns.run("ip", "addr", "add", f"10.214.{i}.1/24", "dev", "cx-eth0")
            ns.run("ip", "link", "set", "cx-eth0", "up")
        yield spaces
    finally:
        for ns in spaces.values():
            delete_netns(ns)


async def test_the_kubernetes_target_drives_agents_on_every_node_of_the_region(
    clusters: dict[str, k8s.ApiClient],
    control_planes: ControlPlanes,
    k8s_namespace: str,
    eu_nodes: dict[str, Netns],
) -> None:
    doc = {
        "apiVersion": "chaosaa.io/v1alpha1",
        "kind": "GameDay",
        "metadata": {"name": "with-agents"},
        "spec": {
            "target": {
                "kind": "kubernetes",
                "url": "http://127.0.0.1:9",
                "regions": {
                    r: {"context": control_planes.context(r), "namespace": k8s_namespace}
                    for r in ("us", "eu", "ap")
                },
            },
            "faults": [
                {"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "5s"}
            ],
        },
    }
    gd = validate_gameday(doc, "with-agents.yaml")
    contexts = tuple(control_planes.context(r) for r in ("us", "eu", "ap"))
    t = KubernetesTarget(gd.spec.target, TargetOptions(run_id="agents", allowed_contexts=contexts))
    t.check(list(gd.spec.faults))
    async with contextlib.AsyncExitStack() as stack:
        for node, ns in eu_nodes.items():
            await stack.enter_async_context(running_agent(clusters["eu"], node, ns.name))
        await asyncio.sleep(0.3)  # the first heartbeats
        await t.open()
        applied = await t.inject(gd.spec.faults[0], 10)
        assert len(applied.state.network_faults) == 3 and len(applied.state.policies) == 1
        t0 = time.monotonic()
        while not await t.verify_effect(applied):
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.02)
        effect = time.monotonic() - t0
        for ns in eu_nodes.values():  # every eu node is dark: everything but itself
            assert "!= @c" in chains(ns)
        await t.renew(applied, 10)
        await t.revert(applied)
        t0 = time.monotonic()
        while not await t.verify_reverted(applied):
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.02)
        for ns in eu_nodes.values():
            assert chains(ns) == ""
    assert effect < 2
