"""Time-to-effect and time-to-revert of every kubernetes fault type, 3 regions x 3 nodes.

Starts the k8s test tier's control planes (3 regions, 3 kwok nodes each; binaries from
``hack/k8s-bin``) and, as root, one network namespace per node with an in-process
``chaosaa`` agent in it (``--netns``), so node faults are applied with real nft/tc rules.
Each round starts from a steady system (every pod running again) and injects one fault
per region *in parallel* (three faults at once, nine nodes), measured exactly as the
engine does: from the inject request until ``verify_effect`` holds (polled every
``KubernetesTarget.verify_interval``), and from the revert request until
``verify_reverted`` holds.

    python bench/k8s_faults.py [--rounds 5] [--out results.md]

Prints a markdown table (median / max over the rounds, seconds; goal: <= 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from chaosaa.agent.agent import Agent, AgentConfig
from chaosaa.agent.crd import networkfault_crd
from chaosaa.rules import resource as nf
from chaosaa.spec.loader import validate_gameday
from chaosaa.targets.base import AppliedFault, TargetOptions
from chaosaa.targets.kubernetes import KubernetesTarget
from tests.k8s.controlplane import ControlPlanes, find_bin_dir, missing_binaries

REGIONS = ("us", "eu", "ap")
NEXT = {"us": "eu", "eu": "ap", "ap": "us"}
NS = "bench"
POLL = KubernetesTarget.verify_interval


def netem_available() -> bool:
    name = f"chaosaa-t-probe{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(
            ["ip", "-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1"],
            check=True,
        )
        res = subprocess.run(
            ["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "p0", "root", "netem",
             "delay", "1ms"],
            capture_output=True, check=False,
        )  # fmt: skip
        return res.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def fault_specs(kind: str, round_no: int) -> list[dict[str, Any]]:
    """One fault per region, all three injected at once."""
    out = []
    for r in REGIONS:
        slug = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")
        base = {"name": f"{slug}-{r}-{round_no}", "duration": "60s"}
        if kind == "regionDown":
            out.append({**base, "type": "regionDown", "regions": [r]})
        elif kind == "blackhole":
            out.append({**base, "type": "blackhole", "regions": [r]})
        elif kind == "latency":
            out.append({**base, "type": "latency", "links": [[r, NEXT[r]]], "delay": "50ms"})
        elif kind == "bandwidth":
            out.append({**base, "type": "bandwidth", "links": [[r, NEXT[r]]], "rate": "10mbit"})
        elif kind == "packetLoss":
            out.append({**base, "type": "packetLoss", "links": [[r, NEXT[r]]], "percent": 10})
        elif kind == "replicationLag (pause)":
            out.append({**base, "type": "replicationLag", "links": [[r, NEXT[r]]],
                        "mode": "pause"})  # fmt: skip
        elif kind == "replicationLag (throttle)":
            out.append({**base, "type": "replicationLag", "links": [[r, NEXT[r]]],
                        "bandwidth": "64kbit"})  # fmt: skip
    return out


def make_node_netns(name: str) -> None:
    """A namespace standing in for a node: one veth with a default route (tc's device)."""
    sh = ["ip", "netns", "exec", name]
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run([*sh, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
                   check=True)  # fmt: skip
    subprocess.run([*sh, "ip", "link", "set", "eth0", "up"], check=True)
    subprocess.run([*sh, "ip", "route", "add", "default", "dev", "eth0"], check=True)


def delete_netns(names: list[str]) -> None:
    for name in names:
        subprocess.run(["ip", "netns", "del", name], check=False)


async def until(check: Callable[[], Awaitable[bool]], limit: float = 20.0) -> float:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > limit:
            raise TimeoutError("not verified within 20 s")
        await asyncio.sleep(POLL)
    return time.monotonic()


def steady(planes: ControlPlanes) -> None:
    """Every region back at its 8 running pods, none being deleted: a round starts from a
    steady system, as a GameDay does (not timed). Back-to-back rounds would otherwise
    scale down ReplicaSets still busy creating the last round's pods."""
    deadline = time.monotonic() + 60
    for r in REGIONS:
        core = k8s.CoreV1Api(planes.api_client(r))
        while True:
            pods = core.list_namespaced_pod(NS).items
            up = [
                p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp
            ]
            if len(up) == len(pods) == 8:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{r}: pods did not come back within 60 s")
            time.sleep(0.1)


async def one_round(target: KubernetesTarget, gameday: Any) -> tuple[list[float], list[float]]:
    faults = list(gameday.spec.faults)

    async def effect(f: Any) -> tuple[AppliedFault, float]:
        t0 = time.monotonic()
        applied = await target.inject(f, 10.0)
        return applied, await until(lambda: target.verify_effect(applied)) - t0

    results = await asyncio.gather(*(effect(f) for f in faults))

    async def revert(applied: AppliedFault) -> float:
        t0 = time.monotonic()
        await target.revert(applied)
        return await until(lambda: target.verify_reverted(applied)) - t0

    reverts = await asyncio.gather(*(revert(a) for a, _ in results))
    return [t for _, t in results], list(reverts)


def setup_cluster(planes: ControlPlanes, region: str, index: int) -> None:
    api = planes.api_client(region)
    ext, core = k8s.ApiextensionsV1Api(api), k8s.CoreV1Api(api)
    with contextlib.suppress(ApiException):
        ext.create_custom_resource_definition(networkfault_crd())
    for ns in (NS, nf.AGENT_NAMESPACE):
        with contextlib.suppress(ApiException):
            core.create_namespace({"metadata": {"name": ns}})
    for i in range(3):
        core.patch_node(
            f"{region}-node-{i}",
            {"metadata": {"annotations": {"chaosaa.io/addresses": f"10.{index}.{i}.0/24"}}},
        )
    apps = k8s.AppsV1Api(api)
    for name, replicas in (("web", 3), ("api", 5)):
        labels = {"app": name}
        apps.create_namespaced_deployment(NS, {
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}}},
        })  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition("networkfaults.chaosaa.io")
        conds = (crd.status.conditions if crd.status else None) or []
        if any(c.type == "Established" and c.status == "True" for c in conds):
            pods = core.list_namespaced_pod(NS).items
            if sum(1 for p in pods if p.status and p.status.phase == "Running") == 8:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{region}: setup did not settle")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=64))
    os.environ.setdefault("CHAOSAA_REPLICATION_PORTS", "5432")
    bin_dir = find_bin_dir()
    if missing := missing_binaries(bin_dir):
        print(f"missing Kubernetes binaries {missing}: run hack/k8s-bin", file=sys.stderr)
        return 2
    root = os.geteuid() == 0
    planes = ControlPlanes(bin_dir, REGIONS, nodes_per_region=3)
    planes.start()
    os.environ["KUBECONFIG"] = str(planes.kubeconfig)
    spaces: list[str] = []
    stop = asyncio.Event()
    agents: list[asyncio.Task[None]] = []
    try:
        for i, r in enumerate(REGIONS):
            await asyncio.to_thread(setup_cluster, planes, r, i)
        if root:
            for r in REGIONS:
                api = planes.api_client(r)
                for i in range(3):
                    name = f"chaosaa-t-bench-{r}{i}"
                    spaces.append(name)
                    await asyncio.to_thread(make_node_netns, name)
                    agent = Agent(AgentConfig(node=f"{r}-node-{i}", netns=name, heartbeat=2), api)
                    agents.append(asyncio.create_task(agent.run(stop)))
            await asyncio.sleep(1.0)  # first heartbeats
        doc = {
            "apiVersion": "chaosaa.io/v1alpha1",
            "kind": "GameDay",
            "metadata": {"name": "bench"},
            "spec": {
                "target": {
                    "kind": "kubernetes",
                    "url": "http://127.0.0.1:9",
                    "regions": {
                        r: {"context": planes.context(r), "namespace": NS} for r in REGIONS
                    },
                },
            },
        }
        contexts = tuple(planes.context(r) for r in REGIONS)
        gd = validate_gameday(doc, "bench.yaml")
        target = KubernetesTarget(gd.spec.target, TargetOptions("bench", contexts))
        target.check([])
        await target.open()
        kinds = ["regionDown", "blackhole", "bandwidth", "packetLoss",
                 "replicationLag (pause)", "replicationLag (throttle)", "latency"]  # fmt: skip
        netem = root and netem_available()
        rows = []
        for kind in kinds:
            node_level = kind not in ("regionDown", "blackhole")
            if node_level and not root:
                rows.append(f"| {kind} | n/a (needs root for agents in netns) | | | |")
                continue
            if kind == "latency" and not netem:
                rows.append(f"| {kind} | n/a: netem is not in this kernel | | | |")
                continue
            effects: list[float] = []
            reverts: list[float] = []
            for n in range(args.rounds):
                body = {**doc["spec"], "faults": fault_specs(kind, n)}
                round_gd = validate_gameday({**doc, "spec": body}, "bench.yaml")
                await asyncio.to_thread(steady, planes)
                e, r = await one_round(target, round_gd)
                effects += e
                reverts += r
            rows.append(
                f"| {kind} | {statistics.median(effects):.3f} | {max(effects):.3f} | "
                f"{statistics.median(reverts):.3f} | {max(reverts):.3f} |"
            )
            print(rows[-1], flush=True)
        table = "\n".join(
            [
                f"3 regions x 3 nodes, one fault per region injected in parallel, "
                f"{args.rounds} rounds; seconds (goal <= 1 s end to end)",
                "",
                "| fault | effect median | effect max | revert median | revert max |",
                "|---|---|---|---|---|",
                *rows,
            ]
        )
        print("\n" + table)
        if args.out:
            args.out.write_text(table + "\n")
        return 0
    finally:
        stop.set()
        await asyncio.gather(*agents, return_exceptions=True)
        await asyncio.to_thread(delete_netns, spaces)
        planes.stop()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
