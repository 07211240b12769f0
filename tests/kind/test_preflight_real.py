"""`chaosaa kind up` as a real process on a machine where kind cannot run.

No Docker engine (our machines) or no kind binary: it must fail fast, exit 4, say what is
missing, run nothing but `docker info`, and create no file.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kind.conftest import REPO


def shim(directory: Path, name: str, log: Path, real: str | None) -> None:
    """A PATH entry that logs its argv, then runs the real tool (or fails like it)."""
    target = f'exec {real} "$@"' if real else "exit 0"
    path = directory / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n{target}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run_kind_up(path_dirs: list[Path], state: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PATH": os.pathsep.join(map(str, path_dirs))}
    return subprocess.run(
        [sys.executable, "-m", "chaosaa.cli.main", "kind", "up", "--state-dir", str(state)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def test_kind_up_without_kind_exits_4_fast_and_touches_nothing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    real_docker = shutil.which("docker")
    if real_docker:
        shim(bin_dir, "docker", log, real_docker)
    state = tmp_path / "state"
    started = time.monotonic()
    proc = run_kind_up([bin_dir, Path(sys.executable).parent], state)
    elapsed = time.monotonic() - started
    assert proc.returncode == 4, proc.stderr
    assert "nothing was changed" in proc.stderr
    assert "`kind` not found on PATH" in proc.stderr
    assert "go install sigs.k8s.io/kind@v0.33.0" in proc.stderr
    assert elapsed < 30
    assert not state.exists()
    calls = log.read_text().splitlines() if log.exists() else []
    assert all(c.startswith("docker info") for c in calls), calls


def test_kind_up_without_a_docker_engine_says_so_and_runs_no_kind_command(
    tmp_path: Path,
) -> None:
    real_docker = shutil.which("docker")
    if real_docker is None:
        pytest.skip("no docker client on this machine: the previous test covers it")
    engine = subprocess.run([real_docker, "info"], capture_output=True, timeout=30, check=False)
    if engine.returncode == 0:
        pytest.skip("a Docker engine runs here: `kind up` would really start")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    shim(bin_dir, "docker", log, real_docker)
    shim(bin_dir, "kind", log, None)
    shim(bin_dir, "kubectl", log, None)
    state = tmp_path / "state"
    proc = run_kind_up([bin_dir, Path(sys.executable).parent], state)
    assert proc.returncode == 4, proc.stderr
    assert "Docker engine not running: `docker info` failed" in proc.stderr
    assert "not found on PATH" not in proc.stderr
    assert log.read_text().splitlines() == ["docker info --format {{.ServerVersion}}"]
    assert not state.exists()
