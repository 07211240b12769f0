"""The four shipped database experiments, run as a user runs them (`chaosaa run FILE`, a
temporary lab of the file's system), end with the verdicts the issue promises: the
primary-standby trap FAILS and says why in plain words; active-active PostgreSQL and a
Galera majority PASS with no acknowledged write or canary lost. Each run leaves nothing
behind: no server, exporter or node process, no network namespace, no data directory."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaosaa.lab.systems import SYSTEMS
from chaosaa.lab.systems.netns import leftover_namespaces
from tests.db.helpers import require, shm_segments
from tests.engine.runs import run_command
from tests.lab.fixtures import processes_mentioning

pytestmark = [pytest.mark.db, pytest.mark.timeout(260)]

EXPERIMENTS = Path(__file__).resolve().parent.parent.parent / "experiments"
#: a run is ~1 min of GameDay plus the lab's start (<= 20 s here) and stop
RUN_TIME_LIMIT = 220


@dataclass(frozen=True)
class Run:
    code: int
    report: dict[str, Any]
    output: str
    seconds: float

    def slo(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = next(s for s in self.report["slos"] if s["name"] == name)
        return found

    @property
    def integrity(self) -> dict[str, Any]:
        data: dict[str, Any] = self.report["dataIntegrity"]
        return data


async def run_experiment(name: str, tmp_path: Path) -> Run:
    """``chaosaa run experiments/NAME.yaml`` with a temporary lab in ``tmp_path``; then
    check that the lab left nothing behind."""
    path = EXPERIMENTS / f"{name}.yaml"
    system = yaml.safe_load(path.read_text())["spec"]["target"]["system"]
    require(SYSTEMS[system])
    state, reports = tmp_path / "lab", tmp_path / "reports"
    shm_before = shm_segments()
    started = time.monotonic()
    proc = await asyncio.to_thread(
        subprocess.run,
        run_command(path, state, reports),
        capture_output=True,
        text=True,
        timeout=RUN_TIME_LIMIT,
    )
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    print(f"{name}: exit {proc.returncode} after {seconds:.1f}s\n{output[-3000:]}")
    assert (reports / "report.json").exists(), output
    report: dict[str, Any] = json.loads((reports / "report.json").read_text())
    assert processes_mentioning(str(state)) == [], "the lab left processes behind"
    assert await leftover_namespaces() == [], "the lab left network namespaces behind"
    assert shm_segments() <= shm_before, "the lab left shared memory behind"
    return Run(proc.returncode, report, output, seconds)


def _lost(run: Run) -> tuple[int, int, int]:
    """(acknowledged writes + canaries, lost writes + canaries, divergent)."""
    data = run.integrity
    canaries: list[dict[str, Any]] = data.get("canaries", [])
    assert canaries, "no datastore canaries in the report"
    acked = data["acknowledgedWrites"] + sum(c["acknowledged"] for c in canaries)
    lost = data["lost"] + sum(c["lost"] for c in canaries)
    divergent = data["divergentKeys"] + sum(c["divergent"] for c in canaries)
    return acked, lost, divergent


async def test_postgres_ha_fails_because_no_region_writes_while_the_primarys_is_down(
    tmp_path: Path,
) -> None:
    run = await run_experiment("postgres-ha/region-down", tmp_path)
    assert run.code == 1, run.output
    assert run.report["verdict"] == "failed"
    # the sentence at the top of the report, in plain words
    findings = run.report["findings"]
    assert any(
        f.startswith("No region accepted writes while primary-region-down") for f in findings
    )
    assert "No region accepted writes" in run.output
    writes = run.slo("writes-available")
    assert writes["verdict"] == "failed"
    assert writes["measured"] > 0.4, writes  # every write in the fault window failed
    # the service stays unhealthy (every write fails) until the primary's region is back
    failover = run.slo("failover")
    assert failover["verdict"] == "failed" and failover["measured"] >= 10.0, failover
    # the trap loses nothing: it refuses writes rather than losing them
    acked, lost, divergent = _lost(run)
    assert acked > 0 and (lost, divergent) == (0, 0)
    print(
        f"postgres-ha: writes {writes['measured']:.1%} errors; failover "
        f"{run.slo('failover')['measured']}s; {lost} lost of {acked}"
    )


async def test_postgres_aa_region_down_passes_with_nothing_lost(tmp_path: Path) -> None:
    run = await run_experiment("postgres-aa/region-down", tmp_path)
    assert run.code == 0, run.output
    assert run.report["verdict"] == "passed"
    failover = run.slo("failover")
    assert failover["verdict"] == "passed" and failover["measured"] <= 5.0
    acked, lost, divergent = _lost(run)
    assert acked > 0 and (lost, divergent) == (0, 0)
    # us and ap kept accepting writes while eu was down
    assert not any(f.startswith("No region accepted writes") for f in run.report["findings"])
    print(
        f"postgres-aa region-down: failover {failover['measured']:.2f}s "
        f"+-{failover['errorBoundSeconds']}; {lost} lost of {acked}; "
        f"conflicts {run.integrity['conflicts']}"
    )


async def test_postgres_aa_partition_passes_and_counts_the_conflicts(tmp_path: Path) -> None:
    run = await run_experiment("postgres-aa/partition", tmp_path)
    assert run.code == 0, run.output
    acked, lost, divergent = _lost(run)
    assert acked > 0 and (lost, divergent) == (0, 0)
    # both sides wrote the same 20 keys for 15 s: last-update-wins had conflicts to resolve
    assert run.integrity["conflicts"] > 0
    lag = run.slo("lag")
    # the canaries kept us's writes pending (lag) across the cut: at least most of it
    assert lag["verdict"] == "passed" and lag["measured"] >= 8.0, lag
    print(
        f"postgres-aa partition: lag {lag['measured']:.1f}s ({lag['source']}); "
        f"{lost} lost of {acked}; conflicts {run.integrity['conflicts']}"
    )


async def test_galera_minority_refuses_writes_and_the_majority_passes(tmp_path: Path) -> None:
    run = await run_experiment("galera/partition", tmp_path)
    assert run.code == 0, run.output
    assert run.slo("minority-refuses")["measured"] == 0  # ap's wsrep_ready, by its exporter
    assert run.slo("majority-serves")["measured"] <= 0.01
    findings = run.report["findings"]
    assert any(
        f.startswith("ap accepted no writes") and f.endswith("eu and us kept accepting writes.")
        for f in findings
    ), findings
    acked, lost, divergent = _lost(run)
    assert acked > 0 and (lost, divergent) == (0, 0)
    lag = run.slo("lag")
    assert lag["measured"] >= 8.0, lag  # ap saw nothing of the majority's writes while cut
    print(
        f"galera partition: {lost} lost of {acked}; lag {lag['measured']:.1f}s; "
        f"majority pauses {run.slo('majority-pauses')['measured']:.1%}"
    )
