"""Faults in chaosaa's own dependencies during a run, each against the real lab.

Prometheus answering 5xx or killed mid-run, a lab node crashing mid-fault, the report's
disk full while it is written, the target API unreachable during revert. In each, the run
neither crashes nor skips a revert, the verdict is never a pass it cannot back, the exit
code follows DESIGN.md, and nothing is left behind.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chaosaa.engine.faults import VERIFY_TIMEOUT
from tests.engine.runs import (
    Output,
    active_faults,
    file_size_limit,
    gameday,
    lease_holder,
    leftovers,
    nothing_left_within,
    report,
    small_tmpfs,
    start_run,
    write,
)
from tests.lab.fixtures import Lab, call, reset_lab, started_lab, wait_until

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]


class FlakyPrometheus:
    """An HTTP front for a real Prometheus that forwards every request until told to
    answer 503, as a failing load balancer or an overloaded Prometheus would."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.failing = threading.Event()
        self.failed_requests = 0
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _forward(self, body: bytes | None) -> None:
                if front.failing.is_set():
                    front.failed_requests += 1
                    self._answer(503, b"503 Service Unavailable", "text/plain")
                    return
                req = urllib.request.Request(
                    front.upstream + self.path, data=body, method=self.command
                )
                if body is not None:
                    req.add_header("Content-Type", self.headers.get("Content-Type", ""))
                try:
                    with urllib.request.urlopen(req, timeout=10) as resp:
                        status, data, ctype = resp.status, resp.read(), resp.headers["Content-Type"]
                except urllib.error.HTTPError as exc:
                    status, data, ctype = exc.code, exc.read(), exc.headers["Content-Type"]
                    exc.close()
                self._answer(status, data, ctype)

            def _answer(self, status: int, data: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyPrometheus:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fresh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab of the test's own: the test breaks a part of it for good."""
    with started_lab(tmp_path_factory.mktemp("fresh-lab")) as lab:
        yield lab


def needs_prometheus(name: str, **spec: Any) -> dict[str, Any]:
    """A GameDay with SLOs that need Prometheus and SLOs that do not."""
    return gameday(
        name,
        steadyState=[{"name": "all-up", "promql": "min(up)", "expect": ">= 1"}],
        abort=[{"name": "never", "promql": "vector(1)", "expect": ">= 0", "for": "2s"}],
        faults=[{"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "6s"}],
        slos=[
            {"name": "lag", "type": "replicationLag", "max": "60s", "canary": False},
            {"name": "targets-up", "type": "promql", "promql": "min(up)", "expect": ">= 0"},
            {"name": "errors", "type": "errorRate", "max": 1},
            {"name": "no-lost-writes", "type": "lostWrites", "max": 0},
        ],
        **spec,
    )


def assert_prometheus_slos_unknown(rep: dict[str, Any], why: str) -> None:
    slos = {s["name"]: s for s in rep["slos"]}
    for name in ("lag", "targets-up"):
        assert slos[name]["verdict"] == "unknown", slos[name]
        assert why in str(slos[name]["details"].get("reason")), slos[name]
    assert slos["errors"]["verdict"] == "passed"  # the probe does not need Prometheus
    assert slos["no-lost-writes"]["verdict"] == "passed"
    after = rep["steadyState"]["after"]
    assert after and not after[0]["passed"]
    assert rep["verdict"] == "failed" and rep["exitCode"] == 1  # unknown fails the run
    fault = rep["faults"][0]
    assert fault["effectiveAt"] and fault["revertedAt"]


def test_prometheus_answering_5xx_mid_run_leaves_its_slos_unknown(
    module_lab: Lab, tmp_path: Path
) -> None:
    reset_lab(module_lab)
    with FlakyPrometheus(module_lab.prometheus) as prom:
        doc = needs_prometheus("prom-5xx", prometheus={"url": prom.url, "timeout": "2s"})
        proc = start_run(module_lab, write(tmp_path, doc), tmp_path / "r")
        out = Output(proc)
        out.wait_for("fault eu-dark in place", 60)
        prom.failing.set()
        proc.wait(timeout=120)
    assert proc.returncode == 1, out.text()
    assert prom.failed_requests > 0
    rep = report(tmp_path / "r")
    assert_prometheus_slos_unknown(rep, "503")
    assert leftovers(module_lab) == [] and lease_holder(module_lab) is None


def test_prometheus_killed_mid_run_leaves_its_slos_unknown(fresh_lab: Lab, tmp_path: Path) -> None:
    proc = start_run(fresh_lab, write(tmp_path, needs_prometheus("prom-killed")), tmp_path / "r")
    out = Output(proc)
    out.wait_for("fault eu-dark in place", 60)
    os.kill(fresh_lab.live_status()["components"]["prometheus"]["pid"], signal.SIGKILL)
    proc.wait(timeout=120)
    assert proc.returncode == 1, out.text()
    rep = report(tmp_path / "r")
    assert_prometheus_slos_unknown(rep, "unreachable")
    assert leftovers(fresh_lab) == [] and lease_holder(fresh_lab) is None


def test_a_lab_node_crashing_mid_fault(fresh_lab: Lab, tmp_path: Path) -> None:
    """eu's node is killed (not paused) while eu is blackholed: the run still reverts and
    reports; what it cannot read back is not a pass; the other regions keep serving."""
    doc = gameday(
        "node-crash",
        recovery={"settle": "2s", "convergenceTimeout": "5s"},
        faults=[{"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "5s"}],
        slos=[
            {"name": "failover", "type": "failoverTime", "max": "30s", "sustain": "1s"},
            {"name": "no-lost-writes", "type": "lostWrites", "max": 0},
        ],
    )
    proc = start_run(fresh_lab, write(tmp_path, doc), tmp_path / "r")
    out = Output(proc)
    out.wait_for("fault eu-dark in place", 60)
    os.kill(fresh_lab.live_status()["regions"]["eu"]["pid"], signal.SIGKILL)
    proc.wait(timeout=120)
    assert proc.returncode == 1, out.text()
    rep = report(tmp_path / "r")
    fault = rep["faults"][0]
    assert fault["revertedAt"] and fault["error"] is None, fault
    slos = {s["name"]: s for s in rep["slos"]}
    assert slos["failover"]["verdict"] == "passed"  # eu's clients went to ap
    assert slos["no-lost-writes"]["verdict"] in ("unknown", "failed"), slos["no-lost-writes"]
    assert leftovers(fresh_lab) == [] and lease_holder(fresh_lab) is None
    for home in fresh_lab.regions:  # the lab keeps serving every home from the others
        wait_until(
            lambda home=home: (
                call(
                    "GET", f"{fresh_lab.router}/kv/k1", headers={"X-Chaosaa-Home": home}, timeout=3
                )[0]
                in (200, 404)
            ),
            15,
            0.2,
            f"requests homed to {home} served",
        )


@pytest.mark.parametrize("how", ["tmpfs", "file-size-limit"])
def test_a_full_report_disk_keeps_the_verdict_and_the_exit_code(
    module_lab: Lab, tmp_path: Path, how: str
) -> None:
    reset_lab(module_lab)
    doc = gameday(
        "disk-full",
        faults=[{"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "2s"}],
        slos=[{"name": "fast", "type": "failoverTime", "max": "1ms", "sustain": "1s"}],
    )
    path = write(tmp_path, doc)
    if how == "tmpfs":
        # one page: the preflight probe fits, report.json (~10 KB) does not
        with small_tmpfs(tmp_path / "mnt", "4k") as mnt:
            proc = start_run(module_lab, path, mnt / "r")
            out = proc.communicate(timeout=120)[0]
            assert list((mnt / "r").iterdir()) == [], "a partial or temporary file was left"
        reason = "No space left on device"
    else:
        limit = file_size_limit(4096)
        proc = start_run(module_lab, path, tmp_path / "r", preexec_fn=limit)
        out = proc.communicate(timeout=120)[0]
        assert not list((tmp_path / "r").glob(".*.tmp"))
        reason = "File too large"
    assert proc.returncode == 1, out  # the SLO failed; a full disk does not change that
    assert "GameDay disk-full: FAILED  exit 1" in out
    assert "fast" in out and "FAILED" in out
    assert "the report could not be written" in out and reason in out
    assert "Traceback" not in out
    assert leftovers(module_lab) == [] and lease_holder(module_lab) is None


def test_target_api_unreachable_during_revert(module_lab: Lab, tmp_path: Path) -> None:
    """The lab supervisor stops answering (SIGSTOP) just as the revert starts: the runner
    retries until the fault's TTL has lapsed, then exits 4 naming what may remain and the
    exact rollback command; the target's own TTL heals the lab once it answers again."""
    reset_lab(module_lab)
    ttl = 6.0
    fault = {"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "3s"}
    path = write(tmp_path, gameday("api-gone", faults=[{**fault, "ttl": f"{ttl:g}s"}]))
    supervisor = module_lab.live_status()["pid"]
    # the revert waits 2 s at its first step: time to take the supervisor away
    proc = start_run(
        module_lab, path, tmp_path / "r", env={"CHAOSAA_FAILPOINTS": "revert.before=sleep(2s)"}
    )
    out = Output(proc)
    try:
        out.wait_for("reverting eu-dark", 60)
        os.kill(supervisor, signal.SIGSTOP)
        started = time.monotonic()
        proc.wait(timeout=90)
        took = time.monotonic() - started
    finally:
        os.kill(supervisor, signal.SIGCONT)
    text = out.text()
    assert proc.returncode == 4, text
    assert took >= VERIFY_TIMEOUT - 1, "gave up before the TTL could take over"
    rep = report(tmp_path / "r")
    assert rep["verdict"] == "error" and rep["faults"][0]["revertedAt"] is None
    assert "retried for" in rep["reason"]
    assert "may remain on the target" in rep["reason"] and "eu-dark (blackhole" in rep["reason"]
    rollback = shlex.join(
        ["chaosaa", "rollback", str(path), "--lab-state", str(module_lab.state_dir)]
    )
    assert "not verified reverted: eu-dark" in text and rollback in text
    # answering again, the lab reverts the fault by itself: its TTL lapsed long ago
    assert nothing_left_within(module_lab, time.monotonic() + ttl + 1) == []
    assert active_faults(module_lab) == []
    # and the command it printed works
    argv = shlex.split(rollback)
    done = subprocess.run(
        [sys.executable, "-m", "chaosaa.cli.main", *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
