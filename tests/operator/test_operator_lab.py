"""GameDayRuns executed by the operator against the real local lab.

The same engine as ``chaosaa run``: a run reaches Succeeded with its results in status;
deleting a running run reverts its faults before the object goes; an operator that stops
(SIGTERM) reverts its runs' faults and marks them Interrupted; one that is killed
(SIGKILL) leaves them to its successor, which rolls the target back.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from chaosaa.operator.runs import parse_time
from tests.lab.fixtures import Lab, call
from tests.lab.fixtures import metric as sample
from tests.operator.conftest import Cluster, OperatorProcess, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.lab, pytest.mark.timeout(240)]


def spec(duration: str = "4s", ttl: str = "10s", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "target": {"kind": "lab", "regions": {"us": {}, "eu": {}, "ap": {}}},
        "traffic": {"rate": 40, "writeRatio": 0.3, "warmup": "1s"},
        "recovery": {"settle": "1s", "convergenceTimeout": "15s"},
        "faults": [
            {
                "name": "eu-dark",
                "type": "blackhole",
                "regions": ["eu"],
                "duration": duration,
                "ttl": ttl,
            }
        ],
        "slos": [
            {"name": "failover", "type": "failoverTime", "max": "30s", "sustain": "1s"},
            {"name": "no-lost-writes", "type": "lostWrites", "max": 0},
            {"name": "errors", "type": "errorRate", "max": 1},
        ],
    }
    body.update(extra)
    return body


def active_faults(lab: Lab) -> list[str]:
    faults = call("GET", f"{lab.supervisor}/faults")[1]["faults"]
    return [f["id"] for f in faults if f.get("state") == "active"]


def phase(cluster: Cluster, name: str) -> str | None:
    run = cluster.run(name)
    return ((run or {}).get("status") or {}).get("phase")


def only_run(cluster: Cluster, gameday: str) -> str:
    runs = wait_for(lambda: cluster.runs(gameday), 20, f"a run of {gameday}")
    assert len(runs) == 1
    return str(runs[0]["metadata"]["name"])


def operator(start_operator: Any, cluster: Cluster, lab: Lab) -> OperatorProcess:
    op: OperatorProcess = start_operator(cluster.ns, "--lab-state", str(lab.state_dir))
    return op


def test_a_triggered_run_against_the_lab_succeeds_with_its_results_in_status(
    cluster: Cluster, start_operator: Any, clean_lab: Lab
) -> None:
    op = operator(start_operator, cluster, clean_lab)
    cluster.create_gameday("region-dark", spec(), annotations={"chaosaa.io/trigger": "1"})
    name = only_run(cluster, "region-dark")
    assert name.startswith("region-dark-manual-")
    wait_for(lambda: phase(cluster, name) in ("Succeeded", "Failed", "Error"), 90, "the run")
    status = cluster.run(name)["status"]  # type: ignore[index]
    assert (status["phase"], status["verdict"], status["exitCode"]) == ("Succeeded", "passed", 0)
    fault = status["faults"][0]
    assert fault["name"] == "eu-dark" and fault["effectiveAt"] and fault["revertedAt"]
    assert 0 < fault["timeToEffectSeconds"] < 5
    assert {s["name"]: s["verdict"] for s in status["slos"]} == {
        "failover": "passed",
        "no-lost-writes": "passed",
        "errors": "passed",
    }
    assert status["failoverSeconds"] == status["slos"][0]["measured"] > 0
    assert status["summary"]["requests"] > 50 and status["summary"]["lostWrites"] == 0
    assert parse_time(status["startedAt"]) <= parse_time(status["finishedAt"])  # type: ignore[operator]
    assert "currentPhase" not in status

    reasons = cluster.reasons(name)
    for reason in (
        "Running",
        "PhasePreflight",
        "PhaseInject",
        "FaultEffective",
        "FaultReverted",
        "PhaseVerify",
        "Succeeded",
    ):
        assert reason in reasons, (reason, reasons)
    last = cluster.gameday("region-dark")["status"]["lastRun"]
    assert (last["name"], last["verdict"]) == (name, "passed")
    assert last["failoverSeconds"] == status["failoverSeconds"]
    metrics = op.metrics()
    labels = {"namespace": cluster.ns, "gameday": "region-dark"}
    assert sample(metrics, "chaosaa_runs_total", verdict="passed", **labels) == 1.0
    assert sample(metrics, "chaosaa_failover_seconds", **labels) == status["failoverSeconds"]
    assert sample(metrics, "chaosaa_faults_active", **labels) == 0.0
    assert active_faults(clean_lab) == []


def test_deleting_a_running_run_reverts_its_faults_before_it_goes(
    cluster: Cluster, start_operator: Any, clean_lab: Lab, control_planes: Any
) -> None:
    operator(start_operator, cluster, clean_lab)
    # a long fault whose TTL cannot be what reverts it in this test
    cluster.create_gameday("long-dark", spec(duration="120s", ttl="300s"))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaosaa.cli.main",
            "gameday",
            "trigger",
            "long-dark",
            "-n",
            cluster.ns,
            "--context",
            control_planes.context("us"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={"KUBECONFIG": str(control_planes.kubeconfig), "PATH": "/usr/bin:/bin"},
    )
    name = out.stdout.strip().rsplit("/", 1)[-1]
    assert out.stdout.startswith(f"created gamedayrun {cluster.ns}/long-dark-manual-")
    wait_for(lambda: active_faults(clean_lab), 30, "the fault in place")
    started = time.monotonic()
    cluster.delete_run(name)
    wait_for(lambda: cluster.run(name) is None, 30, "the run gone")
    assert time.monotonic() - started < 15
    assert active_faults(clean_lab) == []  # reverted before the finalizer was released
    reasons = cluster.reasons(name)
    assert {"Stopping", "FaultReverted", "Aborted"} <= set(reasons), reasons


def test_an_operator_stopped_mid_run_reverts_and_marks_it_interrupted(
    cluster: Cluster, start_operator: Any, clean_lab: Lab
) -> None:
    op = operator(start_operator, cluster, clean_lab)
    cluster.create_gameday(
        "stopped", spec(duration="120s", ttl="300s"), annotations={"chaosaa.io/trigger": "go"}
    )
    name = only_run(cluster, "stopped")
    wait_for(lambda: active_faults(clean_lab), 30, "the fault in place")
    assert op.stop(signal.SIGTERM) == 0
    assert active_faults(clean_lab) == []
    status = cluster.run(name)["status"]  # type: ignore[index]
    assert (status["phase"], status["verdict"]) == ("Interrupted", "interrupted")
    assert status["reason"] == "the operator was shut down"
    assert status["faults"][0]["revertedAt"]


def test_a_run_left_running_by_a_killed_operator_is_rolled_back_by_the_next_one(
    cluster: Cluster, start_operator: Any, clean_lab: Lab
) -> None:
    op = operator(start_operator, cluster, clean_lab)
    cluster.create_gameday(
        "orphan", spec(duration="120s", ttl="300s"), annotations={"chaosaa.io/trigger": "go"}
    )
    name = only_run(cluster, "orphan")
    fault = wait_for(lambda: active_faults(clean_lab), 30, "the fault in place")[0]
    op.stop(signal.SIGKILL)
    time.sleep(1)
    assert active_faults(clean_lab) == [fault]  # nobody reverted it: the TTL is 300 s
    assert phase(cluster, name) == "Running"

    successor = operator(start_operator, cluster, clean_lab)
    wait_for(lambda: phase(cluster, name) == "Interrupted", 30, "Interrupted")
    assert active_faults(clean_lab) == []
    status = cluster.run(name)["status"]  # type: ignore[index]
    assert status["verdict"] == "interrupted"
    assert status["rolledBack"] == [f"reverted lab fault {fault}"]
    assert "stopped mid-run" in status["reason"]
    assert "Interrupted" in cluster.reasons(name)
    labels = {"namespace": cluster.ns, "gameday": "orphan"}
    assert sample(successor.metrics(), "chaosaa_runs_total", verdict="interrupted", **labels) == 1.0


def test_forbid_never_overlaps_runs_and_starts_a_waiting_slot_when_the_run_ends(
    cluster: Cluster, start_operator: Any, clean_lab: Lab
) -> None:
    # a fake minute is 4 s; a run takes ~8 s, so every other slot finds one running
    op: OperatorProcess = start_operator(
        cluster.ns,
        "--lab-state",
        str(clean_lab.state_dir),
        clock=f"scale=15,anchor={int(time.time())}",
    )
    cluster.create_gameday(
        "forbid",
        spec(
            duration="3s",
            schedule="* * * * *",
            startingDeadlineSeconds=600,
            failedRunsHistoryLimit=10,
            successfulRunsHistoryLimit=10,
        ),
    )
    wait_for(
        lambda: (
            len([r for r in cluster.runs("forbid") if (r.get("status") or {}).get("finishedAt")])
            >= 3
        ),
        120,
        "three finished runs",
    )
    op.stop(signal.SIGTERM)
    runs = [r["status"] for r in cluster.runs("forbid") if r.get("status", {}).get("finishedAt")]
    spans = sorted((parse_time(s["startedAt"]), parse_time(s["finishedAt"])) for s in runs)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 1, spans  # startedAt has whole seconds
    assert "Waiting" in cluster.reasons("forbid"), spans
    done = [s for s in runs if s["phase"] != "Interrupted"]  # the last may be stopped
    assert len(done) >= 2 and all(s["phase"] == "Succeeded" for s in done), done


def test_replace_aborts_the_running_run_and_starts_the_new_slot(
    cluster: Cluster, start_operator: Any, clean_lab: Lab
) -> None:
    # a fake minute is 6 s and the fault lasts 120 s: every slot finds the last run going
    op: OperatorProcess = start_operator(
        cluster.ns,
        "--lab-state",
        str(clean_lab.state_dir),
        clock=f"scale=10,anchor={int(time.time())}",
    )
    cluster.create_gameday(
        "replace",
        spec(
            duration="120s",
            ttl="300s",
            schedule="* * * * *",
            concurrencyPolicy="Replace",
            failedRunsHistoryLimit=10,
        ),
    )
    first = wait_for(lambda: cluster.runs("replace"), 20, "the first run")[0]["metadata"]["name"]
    wait_for(lambda: active_faults(clean_lab), 30, "the first run's fault")
    wait_for(lambda: "Replaced" in cluster.reasons("replace"), 30, "the next slot replacing it")
    wait_for(lambda: cluster.run(first) is None, 30, "the first run deleted")
    # the run's last Events may be posted just after its finalizer let it go
    wait_for(
        lambda: {"Stopping", "FaultReverted", "Aborted"} <= set(cluster.reasons(first)),
        15,
        "the first run's Stopping, FaultReverted and Aborted events",
    )
    second = [r["metadata"]["name"] for r in cluster.runs("replace")]
    assert second and first not in second
    # the new run got the target: the old one had reverted its faults and let go of it
    wait_for(
        lambda: [f for f in active_faults(clean_lab) if f.startswith(second[0])],
        30,
        "the new run's fault",
    )
    op.stop(signal.SIGTERM)
    assert active_faults(clean_lab) == []
