"""Helpers for tests that run `chaosaa run` as a real subprocess against a real lab.

A GameDay document builder, the command line, and what chaosaa may leave in the lab
(faults, link-proxy conditions, frozen nodes, the lease), asked of the lab itself. An
independent writer records the writes the demo acknowledges during a run, so that a test
can read them back from every region even when the runner died without a report.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaosaa.lab._procfs import process_state
from tests.lab.fixtures import Lab, call, wait_until


def gameday(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "target": {"kind": "lab", "regions": {"us": {}, "eu": {}, "ap": {}}},
        "traffic": {"rate": 40, "writeRatio": 0.3, "warmup": "1s"},
        "recovery": {"settle": "1s", "convergenceTimeout": "15s"},
        "faults": [{"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "4s"}],
        "slos": [{"name": "errors", "type": "errorRate", "max": 1}],
    }
    body.update(spec)
    return {
        "apiVersion": "chaosaa.io/v1alpha1",
        "kind": "GameDay",
        "metadata": {"name": name},
        "spec": body,
    }


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_command(path: Path, lab_state: Path, reports: Path, *extra: str) -> list[str]:
    """argv of ``chaosaa run PATH`` with the lab state in ``lab_state`` and plain output."""
    return [
        sys.executable,
        "-m",
        "chaosaa.cli.main",
        "run",
        str(path),
        "--lab-state",
        str(lab_state),
        "--report-dir",
        str(reports),
        "--plain",
        *extra,
    ]


def start_run(
    lab: Lab,
    path: Path,
    reports: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[str]:
    """``chaosaa run`` against the running ``lab``; ``env`` is added to this environment."""
    cmd = run_command(path, lab.state_dir, reports, "--no-ephemeral-lab", *extra)
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
    )


def run_to_end(
    lab: Lab, path: Path, reports: Path, env: dict[str, str] | None = None
) -> tuple[int, str]:
    proc = start_run(lab, path, reports, env=env)
    out, _ = proc.communicate(timeout=150)
    return proc.returncode, out


def report(reports: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((reports / "report.json").read_text())
    return data


def active_faults(lab: Lab) -> list[dict[str, Any]]:
    faults: list[dict[str, Any]] = call("GET", f"{lab.supervisor}/faults")[1]["faults"]
    return [f for f in faults if f.get("state") == "active"]


def frozen_nodes(lab: Lab) -> list[str]:
    """Regions whose node process is SIGSTOPped, from /proc (not the supervisor's view)."""
    regions = lab.live_status()["regions"]
    return [r for r, st in regions.items() if st.get("pid") and process_state(st["pid"]) == "T"]


def leftovers(lab: Lab) -> list[str]:
    """Every fault chaosaa may have left in the lab, each asked of the part that holds it:
    the supervisor's faults, the link proxy's conditions, stopped node processes."""
    out = [f"fault {f['id']}" for f in active_faults(lab)]
    conditions = call("GET", f"{lab.proxy}/conditions")[1]["conditions"]
    out += [f"proxy condition {c['id']}" for c in conditions]
    out += [f"node {r} stopped" for r in frozen_nodes(lab)]
    return out


def lease_holder(lab: Lab) -> str | None:
    holder: str | None = call("GET", f"{lab.supervisor}/lease")[1]["holder"]
    return holder


def release_lease(lab: Lab) -> None:
    """Free the lease a killed run left (it would lapse by itself within LEASE_TTL)."""
    holder = lease_holder(lab)
    if holder is not None:
        call("DELETE", f"{lab.supervisor}/lease?holder={holder}")


def nothing_left_within(lab: Lab, deadline: float) -> list[str]:
    """Poll until the lab holds nothing of chaosaa or ``deadline`` (monotonic) passes;
    what is left then."""
    while True:
        left = leftovers(lab)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


class AckedWrites:
    """Writes through the router while a run goes on, each key once, homed in turn to
    every region; remembers those the demo acknowledged (200), for reading back."""

    def __init__(self, lab: Lab, prefix: str, interval: float = 0.1) -> None:
        self.lab = lab
        self.prefix = prefix
        self.interval = interval
        self.acked: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name=f"writes-{prefix}", daemon=True)

    def __enter__(self) -> AckedWrites:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _write(self) -> None:
        homes = itertools.cycle(self.lab.regions)
        for n in itertools.count():
            if self._stop.wait(self.interval):
                return
            key, value = f"{self.prefix}-{n}", f"v{n}"
            try:
                code, _ = call(
                    "PUT",
                    f"{self.lab.router}/kv/{key}",
                    raw=value.encode(),
                    headers={"X-Chaosaa-Home": next(homes)},
                    timeout=2,
                )
            except OSError:
                continue  # not acknowledged: nothing to check
            if code == 200:
                self.acked[key] = value

    def lost(self, regions: list[str] | None = None, timeout: float = 20.0) -> list[str]:
        """Acknowledged writes that some region does not hold once replication had
        ``timeout`` seconds to converge ("region/key")."""

        def missing() -> list[str]:
            out = []
            for region in regions or self.lab.regions:
                for key, value in self.acked.items():
                    code, body = call("GET", f"{self.lab.node(region)}/kv/{key}", timeout=3)
                    if code != 200 or body != value.encode():
                        out.append(f"{region}/{key}")
            return out

        deadline = time.monotonic() + timeout
        while (left := missing()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return left


class Output:
    """The output of a running ``chaosaa run``, read line by line in a thread, so that a
    test can act the moment a line shows (e.g. "reverting eu-dark")."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self._stdout = proc.stdout
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, name="run-output", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._stdout:
            for line in self._stdout:
                self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> None:
        wait_until(lambda: any(text in line for line in self.lines), timeout, 0.02, repr(text))

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` for the block, unmounted after it (needs root and
    CAP_SYS_ADMIN: the test is skipped elsewhere, where a file-size limit stands in)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mount = ["mount", "-t", "tmpfs", "-o", options, "chaosaa-test", str(path)]
    done = subprocess.run(mount, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True, timeout=30)


def fill(directory: Path) -> None:
    """Write into ``directory`` until its file system is full."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


def file_size_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn`` that caps the size of any file the child writes (RLIMIT_FSIZE):
    writing past it fails with EFBIG, as a full disk fails with ENOSPC."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply
