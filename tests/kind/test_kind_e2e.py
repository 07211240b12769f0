"""The kind tier: three real kind clusters (chaosaa-us/eu/ap) and chaosaa against them.

Every GameDay of experiments/kind/ with the verdict it must reach and the figures that
show the fault really acted; the dead-man switch under SIGKILL (the in-node watchdog for
node rules, the host watchdog for ``docker pause``), ``chaosaa rollback`` of a killed run,
and what ``chaosaa kind down`` leaves. Everything is read back from Docker, the node
containers' nft/tc and the process table, not from chaosaa's own account.

Opt-in for plain pytest (``--kind``); ``make test``, ``make test-kind`` and ``.ci/run``
pass it. The clusters come up once per session (tests/kind/conftest.py ``kind``); on our
machines (no registry) with the images of hack/kind-images and ``--workers 0``
(docs/kind.md). The tests run in file order: test_kind_operator.py (the operator in the
hub) comes next and test_kind_teardown.py takes the clusters down.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kind.clusters import (
    CLUSTERS,
    REPO,
    UP_TIMEOUT,
    Finished,
    Kind,
    host_watchdogs,
    until,
)

pytestmark = [pytest.mark.kind, pytest.mark.timeout(UP_TIMEOUT + 900)]

EXPERIMENTS = REPO / "experiments" / "kind"
#: the dead-man switch's TTL in the SIGKILL tests (the engine renews at a fifth of it)
TTL = 5.0


def slo(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["slos"] if s["name"] == name)


def verdict(done: Finished, report: dict[str, Any], expected: str, code: int) -> None:
    detail = (report.get("reason"), done.stdout[-3000:], done.stderr[-3000:])
    assert (done.code, report.get("verdict")) == (code, expected), detail
    # the figures, for the output of `pytest -rP`
    for f in report.get("faults", []):
        effect, revert = f["timeToEffectSeconds"], f["timeToRevertSeconds"]
        print(f"fault {f['name']}: effect {effect}s, revert {revert}s")
    for s in report.get("slos", []):
        print(f"SLO {s['name']}: {s['measured']} {s['unit']} -> {s['verdict']}")
    print(f"data integrity: {report.get('dataIntegrity')}")


def derived(tmp_path: Path, source: str, name: str, change: Any) -> str:
    """A GameDay file made from ``experiments/kind/<source>.yaml`` by ``change(doc)``."""
    doc = yaml.safe_load((EXPERIMENTS / f"{source}.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"].pop("steadyState", None)
    doc["spec"].pop("abort", None)
    doc["spec"]["traffic"]["warmup"] = "2s"
    change(doc)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def long_lived(ttl: float) -> Any:
    def change(doc: dict[str, Any]) -> None:
        for fault in doc["spec"]["faults"]:
            fault.update(after="0s", duration="300s", ttl=f"{ttl:g}s")

    return change


def node_netem_available(kind: Kind) -> bool:
    probe = "unshare -n tc qdisc add dev lo root netem delay 1ms"
    return kind.docker("exec", kind.nodes(CLUSTERS[0])[0], "sh", "-c", probe).code == 0


# --------------------------------------------------------------------------- GameDays


def test_region_down_gameday_passes_on_kind(kind: Kind, tmp_path: Path) -> None:
    if kind.target_file.exists():
        assert kind.chaosaa("validate", str(kind.target_file)).code == 0
    done, report = kind.run_gameday("experiments/kind/region-down.yaml", tmp_path)
    verdict(done, report, "passed", 0)
    failover = slo(report, "failover")
    # eu's clients really lost their region, and got another one within the objective
    assert failover["details"]["degraded"] and failover["details"]["recovered"]
    assert 0 < failover["measured"] <= 10
    assert report["dataIntegrity"]["lost"] == 0
    assert report["faults"][0]["timeToEffectSeconds"] <= 2.0
    # the demo router's own log (the kind target's events) saw the same failover
    moved = [e for e in report["timeline"] if e["event"] == "target.router.failover"]
    eu = [e for e in moved if e["detail"]["home"] == "eu" and e["detail"]["from"] == "eu"]
    assert eu, report["timeline"]
    router_at = datetime.fromisoformat(eu[0]["at"].replace("Z", "+00:00")).timestamp()
    gap = router_at - failover["details"]["recoveredAt"]
    print(f"router failover vs probe: {gap * 1000:+.0f} ms")
    assert abs(gap) <= 0.5


def test_region_blackhole_gameday_passes_on_kind(kind: Kind, tmp_path: Path) -> None:
    done, report = kind.run_gameday("experiments/kind/region-blackhole.yaml", tmp_path)
    verdict(done, report, "passed", 0)
    failover = slo(report, "failover")
    assert failover["details"]["degraded"] and failover["details"]["recovered"]
    assert failover["measured"] <= 10
    # replication to and from eu was cut for the whole fault (20 s), then caught up
    lag = slo(report, "lag")
    assert lag["measured"] >= 10 and lag["details"]["recoveredInTime"]
    assert report["dataIntegrity"]["lost"] == 0


def test_replication_lag_gameday_passes_on_kind(kind: Kind, tmp_path: Path) -> None:
    done, report = kind.run_gameday("experiments/kind/replication-lag.yaml", tmp_path)
    verdict(done, report, "passed", 0)
    # us -> eu replication held for 15 s: the lag rose with it, clients never noticed
    lag = slo(report, "lag")
    assert 10 <= lag["measured"] <= 30 and lag["details"]["recoveredInTime"]
    assert slo(report, "errors")["measured"] <= 0.01
    assert report["dataIntegrity"]["lost"] == 0


def test_split_brain_converges_with_conflicts_and_no_lost_writes(
    kind: Kind, tmp_path: Path
) -> None:
    done, report = kind.run_gameday("experiments/kind/split-brain.yaml", tmp_path)
    verdict(done, report, "passed", 0)
    integrity = report["dataIntegrity"]
    # both sides took writes to the same keys: last-writer-wins resolved them, and every
    # region converged on the same values without losing an acknowledged write
    assert integrity["conflicts"] > 0
    assert integrity["lost"] == 0 and integrity["divergentKeys"] == 0
    # clients were not partitioned: the router in us reached eu and ap throughout
    assert slo(report, "errors")["measured"] <= 0.01


def test_latency_gameday_fails_preflight_naming_netem_when_the_kernel_lacks_it(
    kind: Kind, tmp_path: Path
) -> None:
    if node_netem_available(kind):
        done, report = kind.run_gameday("experiments/kind/latency.yaml", tmp_path)
        verdict(done, report, "passed", 0)
        return
    done, report = kind.run_gameday("experiments/kind/latency.yaml", tmp_path)
    verdict(done, report, "error", 4)
    assert "netem" in report["reason"] and "CONFIG_NET_SCH_NETEM" in report["reason"]
    assert "netem" in done.stderr + done.stdout
    # refused before anything happened: no request sent, no fault requested, no rule left
    assert report["traffic"]["requests"] == 0
    assert report["faults"][0]["requestedAt"] is None
    assert not any(kind.node_rules(n) for n in kind.nodes())


# --------------------------------------------------------------------------- dead-man switch


def test_blackhole_reverts_itself_when_the_runner_is_killed(kind: Kind, tmp_path: Path) -> None:
    gameday = derived(tmp_path, "region-blackhole", "kind-killed-blackhole", long_lived(TTL))
    eu = kind.nodes("chaosaa-eu")
    kind.wait_for_lease()
    run = kind.start_gameday(gameday, tmp_path / "report")
    try:
        run.wait_for_lines("fault eu-dark in place", timeout=180)
        assert all(kind.node_rules(n) for n in eu)
        assert all(kind.node_watchdogs(n) for n in eu)
        killed = run.kill()
    finally:
        run.stop()
    gone = until(lambda: not any(kind.node_rules(n) for n in eu), timeout=TTL + 10)
    print(f"rules gone {gone - killed:.2f}s after SIGKILL (TTL {TTL:g}s)")
    assert gone - killed <= TTL + 1.0, f"rules gone {gone - killed:.2f}s after SIGKILL"
    # each watchdog reverted, logged it and exited
    until(lambda: not any(kind.node_watchdogs(n) for n in eu), timeout=5)
    for node in eu:
        log = kind.docker("exec", node, "sh", "-c", "cat /run/chaosaa/*.log").stdout
        assert "expired: reverting" in log


def test_region_down_reverts_itself_when_the_runner_is_killed(kind: Kind, tmp_path: Path) -> None:
    gameday = derived(tmp_path, "region-down", "kind-killed-region-down", long_lived(TTL))
    eu = kind.nodes("chaosaa-eu")
    kind.wait_for_lease()
    run = kind.start_gameday(gameday, tmp_path / "report")
    try:
        run.wait_for_lines("fault eu-down in place", timeout=180)
        assert all(kind.paused(eu).values())
        assert host_watchdogs()
        killed = run.kill()
    finally:
        run.stop()
    unpaused = until(lambda: not any(kind.paused(eu).values()), timeout=TTL + 10)
    print(f"unpaused {unpaused - killed:.2f}s after SIGKILL (TTL {TTL:g}s)")
    assert unpaused - killed <= TTL + 1.0, f"unpaused {unpaused - killed:.2f}s after SIGKILL"
    until(lambda: not host_watchdogs(), timeout=5)


def test_rollback_removes_a_killed_runs_faults_at_once(kind: Kind, tmp_path: Path) -> None:
    def two_faults(doc: dict[str, Any]) -> None:
        down = {"name": "ap-down", "type": "regionDown", "regions": ["ap"], "duration": "1s"}
        doc["spec"]["faults"].append(down)
        long_lived(600)(doc)  # nothing would revert by itself for 10 minutes

    gameday = derived(tmp_path, "region-blackhole", "kind-rollback", two_faults)
    eu, ap = kind.nodes("chaosaa-eu"), kind.nodes("chaosaa-ap")
    kind.wait_for_lease()
    run = kind.start_gameday(gameday, tmp_path / "report")
    try:
        run.wait_for_lines("fault eu-dark in place", "fault ap-down in place", timeout=180)
        run.kill()
    finally:
        run.stop()
    assert all(kind.node_rules(n) for n in eu) and all(kind.paused(ap).values())
    done = kind.chaosaa("rollback", gameday, timeout=120)
    assert done.code == 0, done.stderr
    assert f"removed: container {ap[0]}: unpaused" in done.stdout
    assert f"removed: node {eu[0]}: nft table inet chaosaa" in done.stdout
    assert not any(kind.node_rules(n) for n in kind.nodes())
    assert not any(kind.paused(ap).values())
    # every watchdog was disarmed: they exit within their poll interval, reverting nothing
    until(lambda: not host_watchdogs() and not any(kind.node_watchdogs(n) for n in eu), 5)
    again = kind.chaosaa("rollback", "--target", "kind")
    assert again.code == 0 and "nothing to roll back" in again.stdout
