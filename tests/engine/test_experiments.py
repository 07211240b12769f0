"""Every shipped experiment, run as is against the real lab, gives the expected verdict —
and what it measures agrees with the lab's own ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.lab.fixtures import Lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

EXPERIMENTS = Path(__file__).resolve().parent.parent.parent / "experiments"
#: the failover the probe measures must agree with the router's log this closely
GROUND_TRUTH_TOLERANCE = 0.1


def run_experiment(
    lab: Lab, name: str, tmp_path: Path, *overrides: str
) -> tuple[int, dict[str, Any]]:
    return run_gameday(lab, EXPERIMENTS / f"{name}.yaml", tmp_path / name, *overrides)


def run_gameday(lab: Lab, path: Path, reports: Path, *overrides: str) -> tuple[int, dict[str, Any]]:
    """``chaosaa run PATH`` against ``lab``: its exit code and report.json."""
    sets = [arg for o in overrides for arg in ("--set", o)]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaosaa.cli.main",
            "run",
            str(path),
            "--lab-state",
            str(lab.state_dir),
            "--no-ephemeral-lab",
            "--report-dir",
            str(reports),
            "--plain",
            *sets,
        ],
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert (reports / "report.json").exists(), proc.stdout + proc.stderr
    report: dict[str, Any] = json.loads((reports / "report.json").read_text())
    return proc.returncode, report


def slo(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in report["slos"] if s["name"] == name)
    return found


def router_failover_truth(report: dict[str, Any], region: str) -> float:
    """Seconds from the fault in place to the router's failover of ``region``'s clients."""
    fault = report["faults"][0]
    effective = _unix(fault["effectiveAt"])
    events = [e for e in report["timeline"] if e["event"] == "target.router.failover"]
    moves = [_unix(e["at"]) for e in events if e["detail"].get("home") == region]
    assert moves, f"the router logged no failover of {region}: {events}"
    return min(t for t in moves if t >= effective) - effective


def _unix(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def assert_failover_matches_router(report: dict[str, Any], region: str) -> None:
    measured = slo(report, "failover")
    truth = router_failover_truth(report, region)
    assert measured["verdict"] == "passed", measured
    assert measured["details"]["degraded"] is True
    assert abs(measured["measured"] - truth) <= GROUND_TRUTH_TOLERANCE, (measured, truth)


def test_region_down_fails_over_within_slo_and_matches_router_log(
    clean_lab: Lab, tmp_path: Path
) -> None:
    code, report = run_experiment(clean_lab, "region-down", tmp_path)
    assert code == 0, report.get("reason")
    assert_failover_matches_router(report, "eu")
    assert slo(report, "no-lost-writes")["measured"] == 0
    assert report["dataIntegrity"]["acknowledgedWrites"] > 100


def test_region_blackhole_fails_over_and_lag_recovers(clean_lab: Lab, tmp_path: Path) -> None:
    code, report = run_experiment(clean_lab, "region-blackhole", tmp_path)
    assert code == 0, report.get("reason")
    assert_failover_matches_router(report, "eu")
    lag = slo(report, "lag")
    assert lag["measured"] > 1.0, "a 15s blackhole must show replication lag"
    assert lag["details"]["recoveredAfterSeconds"] is not None


def test_replication_lag_rises_and_recovers(clean_lab: Lab, tmp_path: Path) -> None:
    code, report = run_experiment(clean_lab, "replication-lag", tmp_path)
    assert code == 0, report.get("reason")
    lag = slo(report, "lag")
    # replication us->eu paused for 10s: the lag peaks near that, not at 0
    assert 3.0 < lag["measured"] < 30.0, lag
    assert lag["details"]["recoveredAfterSeconds"] <= 10.0
    canary = lag["details"].get("canaryLagSeconds", {})
    assert canary.get("us->eu") is not None and canary["us->eu"] > 3.0, canary
    assert slo(report, "errors")["verdict"] == "passed"


def test_latency_keeps_lag_and_errors_within_bounds(clean_lab: Lab, tmp_path: Path) -> None:
    code, report = run_experiment(clean_lab, "latency", tmp_path)
    assert code == 0, report.get("reason")
    lag = slo(report, "lag")
    assert 0 < lag["measured"] <= 2.0


def test_split_brain_resolves_conflicts_and_loses_nothing(clean_lab: Lab, tmp_path: Path) -> None:
    code, report = run_experiment(clean_lab, "split-brain", tmp_path)
    assert code == 0, report.get("reason")
    integrity = report["dataIntegrity"]
    assert integrity["lost"] == 0 and integrity["divergentKeys"] == 0
    assert integrity["conflicts"] > 0, "writes on both sides of the partition must conflict"
    assert integrity["acknowledgedWrites"] > 200


def test_an_unreachable_slo_really_fails_with_exit_1(clean_lab: Lab, tmp_path: Path) -> None:
    code, report = run_experiment(clean_lab, "region-down", tmp_path, "spec.slos.0.max=1ms")
    assert code == 1
    assert report["verdict"] == "failed"
    assert slo(report, "failover")["verdict"] == "failed"
    assert slo(report, "no-lost-writes")["verdict"] == "passed"


def test_a_missing_series_is_unknown_and_fails_the_run(clean_lab: Lab, tmp_path: Path) -> None:
    code, report = run_experiment(
        clean_lab,
        "replication-lag",
        tmp_path,
        "spec.slos.0.promql=max(chaosaa_no_such_series_seconds)",
        "spec.slos.0.canary=false",
    )
    assert code == 1
    lag = slo(report, "lag")
    assert lag["verdict"] == "unknown" and lag["measured"] is None
    assert "no lag series" in lag["details"]["reason"]


def test_prometheus_sourced_failover_agrees_with_the_router_within_its_bound(
    clean_lab: Lab, tmp_path: Path
) -> None:
    code, report = run_experiment(
        clean_lab, "region-down", tmp_path, "spec.slos.0.source=prometheus"
    )
    failover = slo(report, "failover")
    assert failover["source"] == "prometheus"
    assert failover["measured"] is not None, failover
    truth = router_failover_truth(report, "eu")
    assert abs(failover["measured"] - truth) <= failover["errorBoundSeconds"], (failover, truth)
    assert code in (0, 1)


def test_undersized_survivors_fail_on_latency_and_errors(clean_lab: Lab, tmp_path: Path) -> None:
    code, report = run_experiment(clean_lab, "capacity-undersized", tmp_path)
    assert code == 1, report.get("reason")
    assert report["verdict"] == "failed"
    # 25 % headroom looks healthy before the fault ...
    (before,) = report["steadyState"]["before"]
    assert before["passed"], before
    # ... then AP gets EU's clients too, 80 req/s for a ceiling of 50: it queues and sheds
    p99 = slo(report, "survivors-p99")
    assert p99["verdict"] == "failed" and p99["measured"] > 0.25, p99
    assert p99["details"]["slowestRegion"] == "ap"
    assert p99["details"]["byRegion"]["ap"]["samples"] >= 382  # enough to bound a p99
    errors = slo(report, "errors")
    assert errors["verdict"] == "failed" and errors["measured"] > 0.1, errors
    assert errors["details"]["byRegion"]["ap"]["errors"] > 0
    capacity = [e for e in report["timeline"] if e["event"] == "target.capacity"]
    assert capacity and "50 req/s" in capacity[0]["detail"]["ap"]


def test_sized_survivors_carry_the_failed_regions_clients(clean_lab: Lab, tmp_path: Path) -> None:
    code, report = run_experiment(clean_lab, "capacity-sized", tmp_path)
    assert code == 0, report.get("reason")
    p99 = slo(report, "survivors-p99")
    assert p99["verdict"] == "passed" and p99["measured"] < 0.25, p99
    assert set(p99["details"]["byRegion"]) == {"us", "ap"}  # eu was down
    assert slo(report, "errors")["measured"] <= 0.01
    assert slo(report, "failover")["verdict"] == "passed"
