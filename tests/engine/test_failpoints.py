"""Kill `chaosaa run` at every failpoint, in every way, against the real lab.

For each failpoint x {SIGKILL, SIGTERM, an exception} one short GameDay (a region
blackhole and a region down at once, TTL 3 s) runs as a real subprocess with
``CHAOSAA_FAILPOINTS`` arming that point. Then:

- nothing chaosaa did is left in the lab TTL + 1 s after the runner ended, asked of the
  parts that hold it (supervisor faults, link-proxy conditions, /proc state of the nodes);
- when the process survives, the verdict is printed and report.json has the exit code;
- no write the demo acknowledged during the run is lost: an independent writer records
  them and reads each back from every region (and the run's own read-back says 0 lost).

Set CHAOSAA_FAILPOINT_MATRIX=FILE to get the resulting matrix as a markdown table.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaosaa import failpoints
from tests.engine.runs import (
    AckedWrites,
    gameday,
    lease_holder,
    leftovers,
    nothing_left_within,
    release_lease,
    report,
    start_run,
    write,
)
from tests.lab.fixtures import Lab, reset_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

TTL = 3.0
#: kill mode -> the failpoint action that does it
MODES = {"SIGKILL": "kill", "SIGTERM": "term", "exception": "panic"}
POINTS = list(failpoints.POINTS)
#: the run is over there: its verdict stands whatever happens to the process
AFTER_THE_RUN = {"report.before", "report.after"}
#: a failed renewal is tolerated while the fault's TTL still covers it
TOLERATED = {"renew.before", "renew.after"}


def doc(name: str) -> dict[str, object]:
    fault = {"duration": "2s", "ttl": f"{TTL:g}s"}
    return gameday(
        name,
        traffic={"rate": 30, "writeRatio": 0.3, "warmup": "500ms"},
        recovery={"settle": "500ms", "convergenceTimeout": "10s"},
        faults=[
            {"name": "eu-dark", "type": "blackhole", "regions": ["eu"], **fault},
            {"name": "ap-down", "type": "regionDown", "regions": ["ap"], **fault},
        ],
        slos=[
            {"name": "no-lost-writes", "type": "lostWrites", "max": 0},
            {"name": "errors", "type": "errorRate", "max": 1},
        ],
    )


def run_verdict(point: str, mode: str) -> int:
    """The exit code the run itself decides (report.json's, and the process's if it lives)."""
    if point in AFTER_THE_RUN or (point == "verify.after" and mode == "SIGTERM"):
        return 0
    if mode == "exception":
        return 0 if point in TOLERATED else 4
    return 3


def summary(left: list[str]) -> str:
    """``["fault a", "fault b", "node ap stopped"]`` -> ``2 fault, 1 node stopped``."""
    kinds: dict[str, int] = {}
    for item in left:
        kind = "node stopped" if item.startswith("node ") else item.rsplit(" ", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in kinds.items())


def expect_report(point: str, mode: str) -> bool:
    if mode == "SIGKILL":
        return point == "report.after"
    return not (mode == "exception" and point == "report.before")


@pytest.fixture(scope="module")
def matrix() -> Iterator[dict[tuple[str, str], str]]:
    cells: dict[tuple[str, str], str] = {}
    yield cells
    out = os.environ.get("CHAOSAA_FAILPOINT_MATRIX")
    if out and cells:
        lines = ["| failpoint | " + " | ".join(MODES) + " |", "|---" * (len(MODES) + 1) + "|"]
        for point in POINTS:
            row = [cells.get((point, mode), "not run") for mode in MODES]
            lines.append(f"| `{point}` | " + " | ".join(row) + " |")
        Path(out).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("point", POINTS)
def test_nothing_is_left_behind_when_chaosaa_fails_at_a_failpoint(
    module_lab: Lab,
    tmp_path: Path,
    matrix: dict[tuple[str, str], str],
    point: str,
    mode: str,
) -> None:
    lab = module_lab
    release_lease(lab)
    reset_lab(lab)
    name = f"fp-{point.replace('.', '-')}-{mode.lower()}"
    reports = tmp_path / "r"
    with AckedWrites(lab, name) as writes:
        proc = start_run(
            lab,
            write(tmp_path, doc(name)),
            reports,
            env={"CHAOSAA_FAILPOINTS": f"{point}={MODES[mode]}"},
        )
        try:
            out, _ = proc.communicate(timeout=100)
        finally:
            if proc.poll() is None:
                proc.kill()
        ended = time.monotonic()
        at_exit = leftovers(lab)
    left = nothing_left_within(lab, ended + TTL + 1.0)
    holder = lease_holder(lab)
    lost = writes.lost()
    has_report = (reports / "report.json").exists()
    cell = [f"exit {proc.returncode}", "report" if has_report else "no report"]
    if at_exit:
        cell.append(f"at exit: {summary(at_exit)}")
    cell.append(f"after TTL+1s: {', '.join(left)}" if left else "nothing left after TTL+1s")
    if holder:
        cell.append("lease held (lapses by itself)")
    cell.append(f"{len(lost)}/{len(writes.acked)} writes lost")
    matrix[point, mode] = "; ".join(cell)

    assert left == [], f"left behind {TTL + 1:g}s after the runner ended:\n{out}"
    assert lost == [], f"acknowledged writes lost: {lost[:10]}\n{out}"
    assert len(writes.acked) > 0
    code = run_verdict(point, mode)
    assert proc.returncode == (-9 if mode == "SIGKILL" else code), out
    assert has_report == expect_report(point, mode), out
    if has_report:
        rep = report(reports)
        assert rep["exitCode"] == code, out
        integrity = rep["dataIntegrity"]
        assert integrity["lost"] == 0 and integrity["divergentKeys"] == 0
    if proc.returncode >= 0:
        assert f"GameDay {name}: " in out and f"exit {code}" in out, "the verdict was not printed"
    if holder is not None:
        # only a killed run keeps its lease, and only until LEASE_TTL
        assert mode == "SIGKILL", f"lease {holder} left by a run that exited\n{out}"
