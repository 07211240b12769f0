"""Preflight: everything a run needs is checked before anything is injected.

Each failure is a real `chaosaa run` subprocess against the real lab (or with no lab at
all): the right exit code (2 usage, 4 environment), one clear line on stderr, nothing
injected, nothing left behind (no fault, no lease, no lab started, no directory created).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.engine.runs import (
    active_faults,
    file_size_limit,
    fill,
    gameday,
    lease_holder,
    leftovers,
    report,
    run_command,
    small_tmpfs,
    write,
)
from tests.lab.fixtures import Lab, call

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]


def run(
    cmd: list[str],
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The run's stderr is exactly one ``chaosaa: error:`` line; return it."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chaosaa: error: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


def assert_untouched(lab: Lab) -> None:
    assert leftovers(lab) == []
    assert lease_holder(lab) is None


def test_a_report_dir_that_cannot_be_a_directory_is_refused_before_anything(
    lab: Lab, tmp_path: Path
) -> None:
    """A bad --report-dir used to be found after the whole GameDay (traceback, exit 1)."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    ephemeral = tmp_path / "ephemeral-lab"  # a lab would start here if the run went on
    cmd = run_command(
        write(tmp_path, gameday("bad-dir")), ephemeral, not_a_dir / "reports" / "deeper"
    )
    proc = run(cmd)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert f"{not_a_dir}/reports/deeper" in line and "Not a directory" in line
    assert "nothing was run" in line
    assert not ephemeral.exists(), "a lab was started"
    assert_untouched(lab)


@pytest.mark.parametrize("how", ["tmpfs", "file-size-limit"])
def test_a_full_disk_under_the_report_dir_is_an_environment_error(
    lab: Lab, tmp_path: Path, how: str
) -> None:
    doc = write(tmp_path, gameday("full-disk"))
    if how == "tmpfs":
        with small_tmpfs(tmp_path / "mnt", "16k") as mnt:
            fill(mnt)
            proc = run(run_command(doc, lab.state_dir, mnt / "reports", "--no-ephemeral-lab"))
            assert not (mnt / "reports").exists(), "the directory made for the probe was left"
        reason = "No space left on device"
    else:
        limit = file_size_limit(0)  # not even the probe's few bytes fit
        proc = run(
            run_command(doc, lab.state_dir, tmp_path / "reports", "--no-ephemeral-lab"),
            preexec_fn=limit,
        )
        reason = "File too large"
        assert not (tmp_path / "reports").exists()
    assert proc.returncode == 4, proc.stderr
    assert reason in one_error_line(proc)
    assert_untouched(lab)


def test_a_read_only_report_dir_is_a_usage_error(lab: Lab, tmp_path: Path) -> None:
    doc = write(tmp_path, gameday("read-only"))
    with small_tmpfs(tmp_path / "mnt", "64k", read_only=True) as mnt:
        proc = run(run_command(doc, lab.state_dir, mnt / "reports", "--no-ephemeral-lab"))
    assert proc.returncode == 2, proc.stderr
    assert "Read-only file system" in one_error_line(proc)
    assert_untouched(lab)


def test_malformed_failpoints_are_refused_before_anything(lab: Lab, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    doc = write(tmp_path, gameday("bad-failpoints"))
    cmd = run_command(doc, lab.state_dir, reports, "--no-ephemeral-lab")
    proc = run(cmd, env={"CHAOSAA_FAILPOINTS": "revert.before=explode"})
    assert proc.returncode == 2, proc.stderr
    assert "CHAOSAA_FAILPOINTS" in one_error_line(proc)
    assert not reports.exists()
    assert_untouched(lab)


def test_promql_that_does_not_parse_is_invalid_input_and_nothing_is_injected(
    clean_lab: Lab, tmp_path: Path
) -> None:
    doc = gameday(
        "bad-promql", steadyState=[{"name": "broken", "promql": "sum(rate(", "expect": ">= 1"}]
    )
    proc = run(
        run_command(write(tmp_path, doc), clean_lab.state_dir, tmp_path / "r", "--no-ephemeral-lab")
    )
    assert proc.returncode == 2, proc.stderr
    rep = report(tmp_path / "r")
    assert rep["verdict"] == "error" and "sum(rate(" in rep["reason"]
    assert all(f["requestedAt"] is None for f in rep["faults"])
    assert_untouched(clean_lab)


def test_no_lab_to_reach_is_an_environment_error(tmp_path: Path) -> None:
    state = tmp_path / "no-lab-here"
    proc = run(
        run_command(write(tmp_path, gameday("no-lab")), state, tmp_path / "r", "--no-ephemeral-lab")
    )
    assert proc.returncode == 4, proc.stderr
    rep = report(tmp_path / "r")
    assert "no lab is running" in rep["reason"] and "\n" not in rep["reason"]
    assert all(f["requestedAt"] is None for f in rep["faults"])


def test_a_lease_held_by_another_run_is_refused_before_anything(
    clean_lab: Lab, tmp_path: Path
) -> None:
    code, _ = call("POST", f"{clean_lab.supervisor}/lease", {"holder": "other-run", "ttl": 60})
    assert code == 200
    try:
        cmd = run_command(
            write(tmp_path, gameday("leased")),
            clean_lab.state_dir,
            tmp_path / "r",
            "--no-ephemeral-lab",
        )
        proc = run(cmd)
        assert lease_holder(clean_lab) == "other-run"
    finally:
        call("DELETE", f"{clean_lab.supervisor}/lease?holder=other-run")
    assert proc.returncode == 4, proc.stderr
    rep = report(tmp_path / "r")
    assert "other-run" in rep["reason"]
    assert all(f["requestedAt"] is None for f in rep["faults"])
    assert active_faults(clean_lab) == []
