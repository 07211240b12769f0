"""The kind tier, part two: the operator installed in the hub by ``chaosaa kind operator``
(the chart: operator in us, agent DaemonSets in every region, kubeconfig Secrets).

The monthly GameDay resources of experiments/kind/operator/ run from inside the hub to
``Succeeded``; the agent pod applies, reads back and reverts NetworkFaults on a real kind
node, proven by traffic between the node containers; the dead-man switch holds when the
operator pod is deleted or killed mid-run, and when a running GameDayRun is deleted.
Everything is read back from the API servers, the node containers' nft/tc and curl
between nodes, not from chaosaa's own account. Runs after test_kind_e2e.py on the same
clusters (session fixture ``kind``); test_kind_teardown.py takes them down.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaosaa.rules import NodeFault
from chaosaa.rules.resource import network_fault
from tests.kind.clusters import CLUSTERS, REPO, UP_TIMEOUT, Finished, Kind, until

pytestmark = [pytest.mark.kind, pytest.mark.timeout(UP_TIMEOUT + 900)]

EXPERIMENTS = REPO / "experiments" / "kind"

HUB = "kind-chaosaa-us"
NAMESPACE = "chaosaa-system"
OPERATOR_EXPERIMENTS = EXPERIMENTS / "operator"
#: a slot every minute, then the run itself
RUN_TIMEOUT = 240.0


def kubectl(kind: Kind, context: str, *args: str, stdin: str | None = None) -> Finished:
    proc = subprocess.run(
        ["kubectl", "--context", context, *args], env=kind.env, input=stdin,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return Finished(proc.returncode, proc.stdout, proc.stderr)


def kube_json(kind: Kind, context: str, *args: str) -> Any:
    done = kubectl(kind, context, *args, "-o", "json")
    assert done.code == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def operator(kind: Kind, k8s_bin_dir: Path) -> Kind:
    """`chaosaa kind operator` on the session's clusters (once per module)."""
    started = time.monotonic()
    done = kind.chaosaa(
        "kind", "operator", "--state-dir", str(kind.state_dir),
        "--helm", str(k8s_bin_dir / "helm"), timeout=900,
    )  # fmt: skip
    assert done.code == 0, (done.stdout[-3000:], done.stderr[-3000:])
    print(f"chaosaa kind operator: {time.monotonic() - started:.1f}s")
    return kind


def test_the_chart_runs_the_operator_in_the_hub_and_an_agent_in_every_region(
    operator: Kind,
) -> None:
    deploy = kube_json(operator, HUB, "-n", NAMESPACE, "get", "deployment", "chaosaa-operator")
    assert deploy["status"].get("availableReplicas") == 1
    for cluster in CLUSTERS:
        context = f"kind-{cluster}"
        ds = kube_json(operator, context, "-n", NAMESPACE, "get", "daemonset", "chaosaa-agent")
        want = ds["status"]["desiredNumberScheduled"]
        assert want >= 1 and ds["status"].get("numberReady") == want, (cluster, ds["status"])
        caps = ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]
        assert caps == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
        if context != HUB:
            assert kubectl(operator, context, "-n", NAMESPACE, "get", "deployments").stdout == ""
        secret = kube_json(operator, HUB, "-n", NAMESPACE, "get", "secret",
                           f"chaosaa-kubeconfig-{cluster.removeprefix('chaosaa-')}")  # fmt: skip
        server = yaml.safe_load(base64.b64decode(secret["data"]["kubeconfig"]))["clusters"][0]
        assert server["cluster"]["server"] == f"https://{cluster}-control-plane:6443"


def finished_run(kind: Kind, gameday: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def done() -> bool:
        runs = kube_json(kind, HUB, "-n", NAMESPACE, "get", "gamedayruns")["items"]
        found[:] = [
            r for r in runs
            if r["spec"]["gameDay"] == gameday
            and r.get("status", {}).get("phase") in {"Succeeded", "Failed", "Error", "Interrupted"}
        ]  # fmt: skip
        return bool(found)

    until(done, RUN_TIMEOUT, interval=2.0)
    return found[0]


@pytest.mark.parametrize(
    "source",
    [
        # scales eu to zero: the demo node's SQLite (a hostPath) outlives the pod
        "region-down-monthly",
        "region-blackhole-monthly",
    ],
)
def test_a_monthly_gameday_resource_runs_in_the_hub_to_succeeded(
    operator: Kind, source: str
) -> None:
    doc = yaml.safe_load((OPERATOR_EXPERIMENTS / f"{source}.yaml").read_text())
    assert doc["spec"]["schedule"] == "0 10 1 * *"
    doc["spec"]["schedule"] = "* * * * *"  # the test's only change: every minute
    name = doc["metadata"]["name"]
    applied = kubectl(operator, HUB, "apply", "-f", "-", stdin=yaml.safe_dump(doc))
    assert applied.code == 0, applied.stderr
    started = time.monotonic()
    try:
        run = finished_run(operator, name)
        kubectl(operator, HUB, "-n", NAMESPACE, "patch", "gameday", name, "--type=merge",
                "-p", '{"spec":{"suspend":true}}')  # fmt: skip
        status = run["status"]
        print(f"{source}: {run['metadata']['name']} {status.get('phase')} "
              f"{status.get('verdict')} failover {status.get('failoverSeconds')}s, "
              f"{time.monotonic() - started:.0f}s after apply")  # fmt: skip
        assert (status.get("phase"), status.get("verdict")) == ("Succeeded", "passed"), status
        assert 0 < status["failoverSeconds"] <= 10
        assert {s["name"]: s["verdict"] for s in status["slos"]} == {
            "failover": "passed", "no-lost-writes": "passed",
        }  # fmt: skip
        events = kube_json(operator, HUB, "-n", NAMESPACE, "get", "events", "--field-selector",
                           f"involvedObject.name={run['metadata']['name']}")["items"]  # fmt: skip
        assert len({e["reason"] for e in events}) >= 2, [e["reason"] for e in events]
        table = kubectl(operator, HUB, "-n", NAMESPACE, "get", "gamedays", name).stdout
        print(table)
        assert "passed" in table, table

        def scraped() -> bool:
            got = prometheus(operator, "chaosaa_runs_total")
            return bool(got) and bool(prometheus(operator, "chaosaa_failover_seconds"))

        until(scraped, 60, interval=2.0)
    finally:
        kubectl(operator, HUB, "-n", NAMESPACE, "delete", "gameday", name, "--wait=false")


def prometheus(kind: Kind, query: str) -> list[Any]:
    url = "http://127.0.0.1:20090/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return list(json.loads(resp.read())["data"]["result"])
    except (OSError, ValueError, KeyError):
        return []


# ------------------------------------------------------- the agent on a real kind node

EU, US = "chaosaa-eu", "chaosaa-us"
#: the demo node's client NodePort: any node of the cluster serves it
CLIENT_PORT = 30080
#: bandwidth fault's limit: 64 kbit/s = 8000 B/s, /metrics (a few kB) takes a second
RATE_BITS = 64_000.0


def node_ip(kind: Kind, node: str) -> str:
    fmt = '{{(index .NetworkSettings.Networks "kind").IPAddress}}'
    return kind.docker("inspect", "-f", fmt, node).stdout.strip()


def fetch(kind: Kind, node: str, url: str, limit: float = 10.0) -> tuple[str, float]:
    """(HTTP status, bytes/s) of ``curl url`` run inside the node container ``node``."""
    done = kind.docker(
        "exec", node, "curl", "-s", "-o", "/dev/null", "-m", f"{limit:g}",
        "-w", "%{http_code} %{speed_download}", url, timeout=limit + 30,
    )  # fmt: skip
    code, speed = done.stdout.split()
    return code, float(speed)


def fault_phase(kind: Kind, name: str) -> dict[str, Any] | None:
    done = kubectl(kind, f"kind-{EU}", "get", "networkfault", name, "-o", "json")
    return json.loads(done.stdout) if done.code == 0 else None


def apply_fault(kind: Kind, fault: NodeFault, node: str, ttl: float) -> str:
    body = network_fault(
        fault, node=node, run_id="kind-agent-test", fault_name=fault.key, ttl=ttl, now=time.time()
    )
    applied = kubectl(kind, f"kind-{EU}", "apply", "-f", "-", stdin=json.dumps(body))
    assert applied.code == 0, applied.stderr
    return str(body["metadata"]["name"])


def status_of(kind: Kind, name: str) -> dict[str, Any]:
    obj = fault_phase(kind, name)
    return dict((obj or {}).get("status") or {})


@pytest.mark.parametrize(
    ("kind_of", "extra"),
    [
        ("blackhole", {}),
        ("bandwidth", {"rate": RATE_BITS}),
        ("packetLoss", {"percent": 100.0}),
    ],
)
def test_the_agent_applies_reads_back_and_reverts_a_network_fault_on_a_real_node(
    operator: Kind, kind_of: str, extra: dict[str, Any]
) -> None:
    (eu,), (us,) = operator.nodes(EU), operator.nodes(US)
    url = f"http://{node_ip(operator, eu)}:{CLIENT_PORT}/metrics"
    assert operator.node_rules(eu) == ""
    code, fast = fetch(operator, us, url)
    assert code == "200", code
    key = f"ag{kind_of[:4].lower()}"
    fault = NodeFault(key=key, type=kind_of, peers=(f"{node_ip(operator, us)}/32",), **extra)  # type: ignore[arg-type]
    name = apply_fault(operator, fault, eu, ttl=120)
    try:
        created = time.monotonic()
        applied = until(lambda: status_of(operator, name).get("phase") == "Applied", 30)
        status = status_of(operator, name)
        assert status["node"] == eu and status["appliedAt"], status
        obj = fault_phase(operator, name)
        assert obj is not None and "chaosaa.io/agent" in obj["metadata"]["finalizers"]
        rules = operator.node_rules(eu)  # bandwidth is tc (htb), the others nft chains
        assert ("htb ca05:" if kind_of == "bandwidth" else f"chain c{key}_") in rules, rules
        # the fault acts on traffic from us's node to eu's node, nothing else
        code, slow = fetch(operator, us, url)
        if kind_of == "bandwidth":
            assert code == "200" and slow <= 3 * RATE_BITS / 8, (code, slow)
        else:
            assert code == "000", (code, slow)
        print(
            f"{kind_of}: Applied {applied - created:.2f}s after create; "
            f"/metrics from us {fast:.0f} B/s before, {slow:.0f} B/s during ({code})"
        )
    finally:
        deleting = time.monotonic()
        kubectl(operator, f"kind-{EU}", "delete", "networkfault", name, "--wait=false")
    gone = until(lambda: fault_phase(operator, name) is None and not operator.node_rules(eu), 30)
    code, after = fetch(operator, us, url)
    print(f"{kind_of}: object and rules gone {gone - deleting:.2f}s after delete; "
          f"{after:.0f} B/s after")  # fmt: skip
    assert code == "200" and after > 10 * RATE_BITS / 8, (code, after)


def test_the_agent_reverts_a_fault_nobody_renews_within_its_ttl_plus_1s(operator: Kind) -> None:
    (eu,), (us,) = operator.nodes(EU), operator.nodes(US)
    ttl = 4.0
    fault = NodeFault(key="agexp", type="blackhole", peers=(f"{node_ip(operator, us)}/32",))
    expires = time.time() + ttl
    name = apply_fault(operator, fault, eu, ttl=ttl)
    try:
        until(lambda: "cagexp" in operator.node_rules(eu), 10)
        until(lambda: "cagexp" not in operator.node_rules(eu), ttl + 10)
        late = time.time() - expires
        print(f"rules gone {late:+.2f}s after expiresAt (TTL {ttl:g}s)")
        assert late <= 1.0, f"rules gone {late:.2f}s after expiresAt"
        until(lambda: status_of(operator, name).get("phase") == "Reverted", 10)
        assert status_of(operator, name)["reason"] == "Expired"
    finally:
        kubectl(operator, f"kind-{EU}", "delete", "networkfault", name, "--wait=false")
    until(lambda: fault_phase(operator, name) is None, 30)


# ------------------------------------------------------------------- crash safety

#: the dead-man switch of the crash-safety GameDays (the operator renews at a fifth of it)
TTL = 5.0


def blackhole_resource(name: str) -> dict[str, Any]:
    """region-blackhole-monthly, suspended (runs only when triggered), held for minutes."""
    doc = yaml.safe_load((OPERATOR_EXPERIMENTS / "region-blackhole-monthly.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["suspend"] = True
    doc["spec"].pop("steadyState", None)
    doc["spec"].pop("abort", None)
    doc["spec"]["traffic"]["warmup"] = "2s"
    for fault in doc["spec"]["faults"]:
        fault.update(after="0s", duration="300s", ttl=f"{TTL:g}s")
    return dict(doc)


def eu_faults_applied(kind: Kind) -> bool:
    got = kubectl(kind, f"kind-{EU}", "get", "networkfaults", "-o", "json")
    items = json.loads(got.stdout)["items"] if got.code == 0 else []
    applied = [i for i in items if (i.get("status") or {}).get("phase") == "Applied"]
    return bool(applied) and all(kind.node_rules(n) for n in kind.nodes(EU))


def eu_artefacts(kind: Kind) -> list[str]:
    """What a blackhole leaves in eu: NetworkFaults, chaosaa NetworkPolicies, node rules."""
    found = []
    for what, ns in (("networkfaults", ()), ("networkpolicies", ("-A",))):
        got = kubectl(kind, f"kind-{EU}", "get", what, *ns, "-l",
                      "app.kubernetes.io/managed-by=chaosaa", "-o", "name")  # fmt: skip
        found += got.stdout.split()
    found += [f"node {n}: rules" for n in kind.nodes(EU) if kind.node_rules(n)]
    return found


def runs_of(kind: Kind, gameday: str) -> list[dict[str, Any]]:
    items = kube_json(kind, HUB, "-n", NAMESPACE, "get", "gamedayruns")["items"]
    return [r for r in items if r["spec"]["gameDay"] == gameday]


def start_held_blackhole(kind: Kind, name: str) -> str:
    """Apply and trigger the held blackhole; the run's name once eu's rules are in place."""
    applied = kubectl(kind, HUB, "apply", "-f", "-", stdin=yaml.safe_dump(blackhole_resource(name)))
    assert applied.code == 0, applied.stderr
    assert not eu_artefacts(kind), eu_artefacts(kind)
    kubectl(kind, HUB, "-n", NAMESPACE, "annotate", "--overwrite", "gameday", name,
            f"chaosaa.io/trigger=t{time.time_ns()}")  # fmt: skip
    until(lambda: bool(runs_of(kind, name)) and eu_faults_applied(kind), RUN_TIMEOUT, 1.0)
    (run,) = runs_of(kind, name)
    assert run["status"]["phase"] == "Running", run["status"]
    return str(run["metadata"]["name"])


def operator_pod(kind: Kind) -> str:
    pods = kube_json(kind, HUB, "-n", NAMESPACE, "get", "pods", "-l",
                     "app.kubernetes.io/component=operator")["items"]  # fmt: skip
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 1, [p["metadata"]["name"] for p in pods]
    return str(live[0]["metadata"]["name"])


def run_phase(kind: Kind, run: str) -> str | None:
    got = kubectl(kind, HUB, "-n", NAMESPACE, "get", "gamedayrun", run, "-o", "json")
    return json.loads(got.stdout).get("status", {}).get("phase") if got.code == 0 else None


@pytest.mark.parametrize("how", ["delete-pod", "sigkill"])
def test_a_run_whose_operator_dies_reverts_within_ttl_and_ends_interrupted(
    operator: Kind, how: str
) -> None:
    name = f"crash-{how}"
    try:
        run = start_held_blackhole(operator, name)
        pod = operator_pod(operator)
        killed = time.monotonic()
        if how == "delete-pod":
            done = kubectl(operator, HUB, "-n", NAMESPACE, "delete", "pod", pod,
                           "--grace-period=0", "--force")  # fmt: skip
        else:  # the operator process itself, from its node: no signal handler runs
            (hub,) = operator.nodes(US)
            done = operator.docker("exec", hub, "pkill", "-KILL", "-f", "chaosaa operator")
        assert done.code == 0, done.stderr
        gone = until(lambda: not any(operator.node_rules(n) for n in operator.nodes(EU)),
                     TTL + 10)  # fmt: skip
        print(f"{how}: eu's node rules gone {gone - killed:.2f}s after (TTL {TTL:g}s)")
        assert gone - killed <= TTL + 1.0
        ended = until(lambda: run_phase(operator, run) == "Interrupted", 180, 1.0)
        until(lambda: not eu_artefacts(operator), 60, 1.0)
        print(f"{how}: run {run} Interrupted {ended - killed:.1f}s after; eu clean")
        # the slot fired once: the new operator did not start the run again
        assert [r["metadata"]["name"] for r in runs_of(operator, name)] == [run]
    finally:
        kubectl(operator, HUB, "-n", NAMESPACE, "delete", "gameday", name, "--wait=false")


def test_deleting_a_running_gamedayrun_reverts_its_faults(operator: Kind) -> None:
    name = "crash-delete-run"
    try:
        run = start_held_blackhole(operator, name)
        deleted = time.monotonic()
        done = kubectl(operator, HUB, "-n", NAMESPACE, "delete", "gamedayrun", run, "--wait=false")
        assert done.code == 0, done.stderr
        clean = until(lambda: not eu_artefacts(operator), TTL + 10, 0.2)
        gone = until(lambda: run_phase(operator, run) is None, 60, 0.5)
        print(f"run deleted: eu clean {clean - deleted:.2f}s after, the run gone "
              f"{gone - deleted:.2f}s after")  # fmt: skip
        assert clean - deleted <= TTL + 1.0
        assert runs_of(operator, name) == []
    finally:
        kubectl(operator, HUB, "-n", NAMESPACE, "delete", "gameday", name, "--wait=false")
