"""Cron firing against a real apiserver, with real operator processes and restarts.

The operator's clock runs faster (CHAOSAA_OPERATOR_CLOCK) so that an every-minute
schedule fires every few seconds; everything else is real: kopf watching the apiserver,
runs created and executed, SIGTERM and SIGKILL. The GameDays target a lab that is not
running, so each run ends in Error within milliseconds: this file is about *when* runs
are created, not what they do (test_operator_lab.py is).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from chaosaa.operator.runs import parse_time
from chaosaa.operator.schedule import run_name
from tests.operator.conftest import Cluster, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]


def spec(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "target": {"kind": "lab", "regions": {"us": {}, "eu": {}}},
        "faults": [{"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "2s"}],
        "slos": [{"name": "errors", "type": "errorRate", "max": 1}],
        "schedule": "* * * * *",
        "concurrencyPolicy": "Allow",
        "failedRunsHistoryLimit": 100,
    }
    body.update(extra)
    return body


def slots(cluster: Cluster, gameday: str) -> list[float]:
    return sorted(
        parse_time(r["spec"]["scheduledTime"]) or 0.0
        for r in cluster.runs(gameday)
        if r["spec"]["trigger"] == "schedule"
    )


def test_every_minute_fires_exactly_once_per_slot_across_operator_restarts(
    cluster: Cluster, start_operator: Any, tmp_path: Path
) -> None:
    scale = 5.0  # a fake minute is 12 s
    minute = 60 / scale
    anchor = int(time.time())
    clock = f"scale={scale:g},anchor={anchor}"

    def fake(wall: float) -> float:
        return anchor + (wall - anchor) * scale

    nolab = ["--lab-state", str(tmp_path / "no-lab")]
    cluster.create_gameday("every-minute", spec(startingDeadlineSeconds=120))
    op = start_operator(cluster.ns, *nolab, clock=clock)
    wait_for(lambda: len(slots(cluster, "every-minute")) >= 2, 4 * minute, "two slots")

    # Restart 1, inside one slot, after "losing" the status write of the slot that just
    # fired (what makes Chaos Mesh fire twice): the new operator tries that slot again and
    # finds its run there.
    fired = len(slots(cluster, "every-minute"))
    wait_for(lambda: len(slots(cluster, "every-minute")) > fired, 2 * minute, "a fresh slot")
    op.stop(signal.SIGTERM)
    last = slots(cluster, "every-minute")[-1]
    assert cluster.gameday("every-minute")["status"]["lastScheduleTime"] == _iso(last)
    cluster.patch_gameday(
        "every-minute", {"status": {"lastScheduleTime": _iso(last - 60)}}, status=True
    )
    op = start_operator(cluster.ns, *nolab, clock=clock)
    wait_for(lambda: "exists already: not firing again" in op.output(), minute, "the re-fire")
    assert slots(cluster, "every-minute")[-1] in (last, last + 60)

    # Restart 2: SIGKILL, and a slot passes while no operator runs. It fires after the
    # restart (within startingDeadlineSeconds), late but exactly once.
    wait_for(lambda: len(slots(cluster, "every-minute")) > fired + 2, 3 * minute, "more slots")
    op.stop(signal.SIGKILL)
    killed = time.time()
    time.sleep(minute * 1.3)
    restarted = time.time()
    op = start_operator(cluster.ns, *nolab, clock=clock)
    missed = [s for s in _every_minute(fake(killed), fake(restarted))]
    assert missed, "no slot fell into the downtime"
    wait_for(lambda: set(missed) <= set(slots(cluster, "every-minute")), minute, "the missed slot")
    count = len(slots(cluster, "every-minute"))
    wait_for(lambda: len(slots(cluster, "every-minute")) >= count + 1, 2 * minute, "one more")
    op.stop(signal.SIGTERM)

    fired_slots = slots(cluster, "every-minute")
    names = [r["metadata"]["name"] for r in cluster.runs("every-minute")]
    # no slot lost: every minute from the first to the last has its run, and only one
    assert fired_slots == [fired_slots[0] + 60 * i for i in range(len(fired_slots))]
    assert sorted(names) == sorted(run_name("every-minute", s) for s in fired_slots)
    # no slot fired twice: one creation ("Scheduled") per run across all three operators,
    # and every run was started exactly once
    created = Counter(
        e.message.split()[2] for e in cluster.events("every-minute") if e.reason == "Scheduled"
    )
    assert created == Counter(names)
    for name in names:
        status = cluster.run(name)["status"]  # type: ignore[index]
        # each run fails in preflight (no lab); one still in flight when an operator is
        # stopped ends Interrupted instead: either way it was started exactly once
        assert status["phase"] in ("Error", "Interrupted") and status["startedAt"], (name, status)
        # (Events are best effort: the one of a run claimed just before SIGKILL may be
        # lost, never doubled)
        assert cluster.reasons(name).count("Running") <= 1, (name, cluster.reasons(name))


def _iso(instant: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(instant))


def _every_minute(after: float, until: float) -> list[float]:
    first = (int(after) // 60 + 1) * 60
    return [float(t) for t in range(first, int(until) + 1, 60)]


def test_a_suspended_gameday_does_not_fire_and_skips_the_slots_it_missed(
    cluster: Cluster, start_operator: Any, tmp_path: Path
) -> None:
    scale = 12.0  # a fake minute is 5 s
    anchor = int(time.time())
    cluster.create_gameday("paused", spec(suspend=True))
    start_operator(
        cluster.ns,
        "--lab-state",
        str(tmp_path / "no-lab"),
        clock=f"scale={scale:g},anchor={anchor}",
    )
    condition = wait_for(lambda: _condition(cluster, "paused"), 10, "the Valid condition")
    assert condition["status"] == "True" and "(suspended)" in condition["message"]
    time.sleep(3 * 60 / scale)
    assert cluster.runs("paused") == []
    assert "nextScheduleTime" not in (cluster.gameday("paused").get("status") or {})

    resumed = time.time()
    cluster.patch_gameday("paused", {"spec": {"suspend": False}})
    wait_for(lambda: len(slots(cluster, "paused")) >= 2, 4 * 60 / scale, "runs after resuming")
    fake_resumed = anchor + (resumed - anchor) * scale
    # the slots that passed while suspended never ran (not even the latest one)
    assert slots(cluster, "paused")[0] > fake_resumed - 1


def _condition(cluster: Cluster, name: str) -> dict[str, Any] | None:
    status = cluster.gameday(name).get("status") or {}
    return next((c for c in status.get("conditions", []) if c["type"] == "Valid"), None)


def test_an_invalid_gameday_gets_a_condition_saying_why_and_never_runs(
    cluster: Cluster, start_operator: Any, tmp_path: Path
) -> None:
    body = spec()
    body["faults"][0]["regions"] = ["ap"]  # not in target.regions: no schema can tell
    cluster.create_gameday("wrong-region", body, annotations={"chaosaa.io/trigger": "now"})
    start_operator(
        cluster.ns,
        "--lab-state",
        str(tmp_path / "no-lab"),
        clock=f"scale=12,anchor={int(time.time())}",
    )
    condition = wait_for(lambda: _condition(cluster, "wrong-region"), 10, "the Valid condition")
    assert condition["status"] == "False" and condition["reason"] == "Invalid"
    assert condition["message"] == (
        f"{cluster.ns}/wrong-region: spec.faults[0]: region(s) ap not in target.regions (eu, us)"
    )
    wait_for(lambda: "TriggerIgnored" in cluster.reasons("wrong-region"), 10, "TriggerIgnored")
    assert "Invalid" in cluster.reasons("wrong-region")
    time.sleep(2 * 60 / 12)
    assert cluster.runs("wrong-region") == []

    # fixed: valid again, and it runs
    cluster.patch_gameday(
        "wrong-region",
        {
            "spec": {
                "faults": [
                    {"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "2s"}
                ]
            }
        },
    )
    wait_for(
        lambda: (_condition(cluster, "wrong-region") or {}).get("status") == "True",
        10,
        "Valid=True",
    )
    wait_for(lambda: cluster.runs("wrong-region"), 15, "a run")
