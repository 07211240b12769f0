"""Revert always runs: success, SLO failure, abort rule, exception, SIGINT, SIGTERM — and,
via the TTL, SIGKILL. Real `chaosaa run` subprocesses against the real lab."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from chaosaa.engine.run import LEASE_TTL, Run
from chaosaa.spec.loader import validate_gameday
from chaosaa.targets.base import AppliedFault, TargetOptions
from chaosaa.targets.lab import LabTarget
from tests.engine.runs import (
    active_faults,
    gameday,
    report,
    run_command,
    run_to_end,
    start_run,
    write,
)
from tests.lab.fixtures import Lab, call, wait_until

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]


def eu_home_is_served(lab: Lab) -> bool:
    code, _ = call("GET", f"{lab.router}/kv/probe", headers={"X-Chaosaa-Home": "eu"}, timeout=3)
    return code in (200, 404)


def assert_nothing_left(lab: Lab) -> None:
    assert active_faults(lab) == [], "a fault was left behind"
    wait_until(lambda: eu_home_is_served(lab), 15, 0.2, "traffic for eu flows again")


def test_fault_is_reverted_when_every_slo_passes(clean_lab: Lab, tmp_path: Path) -> None:
    code, out = run_to_end(clean_lab, write(tmp_path, gameday("ok-run")), tmp_path / "r")
    assert code == 0, out
    fault = report(tmp_path / "r")["faults"][0]
    assert fault["effectiveAt"] and fault["revertedAt"]
    assert_nothing_left(clean_lab)


def test_fault_is_reverted_when_an_slo_fails(clean_lab: Lab, tmp_path: Path) -> None:
    doc = gameday(
        "slo-fails", slos=[{"name": "fast", "type": "failoverTime", "max": "1ms", "sustain": "1s"}]
    )
    code, out = run_to_end(clean_lab, write(tmp_path, doc), tmp_path / "r")
    assert code == 1, out
    rep = report(tmp_path / "r")
    assert rep["verdict"] == "failed"
    assert rep["slos"][0]["verdict"] == "failed"
    assert rep["slos"][0]["measured"] > 0.001
    assert_nothing_left(clean_lab)


def test_fault_is_reverted_when_an_abort_rule_fires(clean_lab: Lab, tmp_path: Path) -> None:
    doc = gameday(
        "abort-fires",
        faults=[{"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "60s"}],
        abort=[{"name": "never-ok", "promql": "vector(1)", "expect": "< 0", "for": "2s"}],
    )
    t0 = time.monotonic()
    code, out = run_to_end(clean_lab, write(tmp_path, doc), tmp_path / "r")
    assert code == 3, out
    assert time.monotonic() - t0 < 45, "the abort rule did not cut the 60s fault short"
    rep = report(tmp_path / "r")
    assert rep["verdict"] == "aborted" and "never-ok" in rep["reason"]
    assert rep["faults"][0]["effectiveAt"] and rep["faults"][0]["revertedAt"]
    assert_nothing_left(clean_lab)


def test_steady_state_not_met_aborts_before_any_fault(clean_lab: Lab, tmp_path: Path) -> None:
    doc = gameday(
        "steady-fails",
        steadyState=[{"name": "impossible", "promql": "vector(0.5)", "expect": ">= 0.99"}],
    )
    code, out = run_to_end(clean_lab, write(tmp_path, doc), tmp_path / "r")
    assert code == 3, out
    rep = report(tmp_path / "r")
    assert rep["faults"][0]["effectiveAt"] is None
    assert rep["faults"][0]["requestedAt"] is None
    assert "steady state" in rep["reason"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_fault_is_reverted_on_signal(clean_lab: Lab, tmp_path: Path, sig: signal.Signals) -> None:
    doc = gameday(
        "signalled",
        faults=[{"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "120s"}],
    )
    proc = start_run(clean_lab, write(tmp_path, doc), tmp_path / "r")
    try:
        wait_until(lambda: active_faults(clean_lab), 60, 0.1, "the fault to be injected")
        assert not eu_home_is_served(clean_lab) or True  # router may have failed over already
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, out
    assert f"interrupted by {sig.name}" in report(tmp_path / "r")["reason"]
    assert report(tmp_path / "r")["faults"][0]["revertedAt"] is not None
    assert_nothing_left(clean_lab)


def test_blackhole_reverts_itself_when_runner_is_killed(clean_lab: Lab, tmp_path: Path) -> None:
    ttl = 4.0
    doc = gameday(
        "killed",
        faults=[
            {
                "name": "eu-dark",
                "type": "blackhole",
                "regions": ["eu"],
                "duration": "120s",
                "ttl": f"{ttl:g}s",
            }
        ],
    )
    proc = start_run(clean_lab, write(tmp_path, doc), tmp_path / "r")
    try:
        wait_until(lambda: active_faults(clean_lab), 60, 0.1, "the fault to be injected")
        time.sleep(ttl)  # the runner has renewed at least once: the TTL is what heals
        assert active_faults(clean_lab), "the fault expired although the runner renewed it"
        proc.kill()
        killed_at = time.monotonic()
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_until(lambda: not active_faults(clean_lab), ttl + 2, 0.05, "the fault to expire")
    assert time.monotonic() - killed_at <= ttl + 1.5
    # traffic flows again through the router to eu's home
    wait_until(lambda: eu_home_is_served(clean_lab), 15, 0.2, "traffic for eu flows again")
    status = call("GET", f"{clean_lab.supervisor}/status")[1]
    assert [f for f in status["faults"] if f.get("state") == "active"] == []
    # the killed run's lease lapses by itself too, so the next run may start
    wait_until(
        lambda: call("GET", f"{clean_lab.supervisor}/lease")[1]["holder"] is None,
        LEASE_TTL + 2,
        0.2,
        "the killed run's lease to lapse",
    )


def test_a_second_concurrent_run_is_refused(clean_lab: Lab, tmp_path: Path) -> None:
    doc = gameday(
        "first-run",
        faults=[{"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "120s"}],
    )
    first = start_run(clean_lab, write(tmp_path, doc), tmp_path / "r1")
    try:
        wait_until(lambda: active_faults(clean_lab), 60, 0.1, "the first run's fault")
        second = write(tmp_path, gameday("second-run"))
        code, out = run_to_end(clean_lab, second, tmp_path / "r2")
        assert code == 4, out
        assert "first-run" in report(tmp_path / "r2")["reason"]
        assert report(tmp_path / "r2")["faults"][0]["requestedAt"] is None
        assert len(active_faults(clean_lab)) == 1
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 3
    assert_nothing_left(clean_lab)


class ExplodingTarget(LabTarget):
    """The real lab target; verifying the second fault raises, mid-observe."""

    async def verify_effect(self, applied: AppliedFault) -> bool:
        if applied.fault.name == "second":
            raise RuntimeError("boom while observing")
        return await super().verify_effect(applied)


async def test_faults_are_reverted_when_an_exception_is_raised_in_observe(clean_lab: Lab) -> None:
    doc = gameday(
        "exploding",
        faults=[
            {"name": "first", "type": "blackhole", "regions": ["eu"], "duration": "30s"},
            {
                "name": "second",
                "type": "latency",
                "links": [["us", "ap"]],
                "delay": "50ms",
                "after": "2s",
                "duration": "30s",
            },
        ],
    )
    gd = validate_gameday(doc, "exploding.yaml")
    options = TargetOptions(
        run_id="exploding-1", state_dir=str(clean_lab.state_dir), ephemeral=False
    )
    run = Run(gd, options, target=ExplodingTarget(gd.spec.target, options))
    outcome = await run.execute()
    assert outcome.exit_code == 4
    assert "boom while observing" in (outcome.reason or "")
    first, second = outcome.faults
    assert first.effective_at is not None and first.reverted_at is not None
    assert second.requested_at is not None and second.reverted_at is not None
    assert active_faults(clean_lab) == []


def test_prometheus_unreachable_is_exit_4_with_one_line_reason(tmp_path: Path) -> None:
    doc = gameday(
        "no-prometheus",
        prometheus={"url": "http://127.0.0.1:9", "timeout": "2s"},
        steadyState=[{"name": "up", "promql": "up", "expect": ">= 1"}],
    )
    state = tmp_path / "lab"
    proc = subprocess.run(
        run_command(write(tmp_path, doc), state, tmp_path / "r"),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 4, proc.stderr
    rep = report(tmp_path / "r")
    assert rep["verdict"] == "error"
    reason = rep["reason"]
    assert "\n" not in reason and "127.0.0.1:9" in reason and "unreachable" in reason
    assert not (state / "status.json").exists(), "a lab was started although Prometheus was down"


def test_an_ephemeral_lab_stops_by_itself_when_the_run_is_killed(tmp_path: Path) -> None:
    """`chaosaa run` started a temporary lab; SIGKILL of the run leaves nothing behind."""
    from tests.lab.fixtures import processes_mentioning

    state = tmp_path / "ephemeral-lab"
    doc = gameday(
        "ephemeral-killed",
        faults=[{"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "120s"}],
    )
    cmd = run_command(write(tmp_path, doc), state, tmp_path / "r")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def fault_active() -> bool:
            doc = state / "lab.json"
            if not doc.exists():
                return False
            sup = json.loads(doc.read_text()).get("supervisor")
            try:
                faults = call("GET", f"{sup}/faults", timeout=2)[1]["faults"]
            except OSError:
                return False
            return any(f.get("state") == "active" for f in faults)

        wait_until(fault_active, 90, 0.2, "the ephemeral lab to carry the fault")
        assert processes_mentioning(str(state))
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_until(lambda: not processes_mentioning(str(state)), 20, 0.2, "the ephemeral lab to stop")
