"""The kind tier's view of real kind clusters: bring them up once, run chaosaa against
them, and read back what is really there (docker, nft, tc, processes), never what chaosaa
says it did.

Everything goes through the same CLIs a user has (``chaosaa``, ``docker``, ``kind``,
``kubectl``). Only the clusters this module creates are touched: ``chaosaa-us``,
``chaosaa-eu``, ``chaosaa-ap`` (kind-configs/), and ``kind up`` refuses to start when any
of them exists already.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaosaa.kindsetup.topology import DEFAULT_REGIONS
from chaosaa.rules.shell import (
    WATCHDOG_MARK,
)
from chaosaa.targets.kind.target import CLUSTER_LABEL

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = tuple(f"chaosaa-{r}" for r in DEFAULT_REGIONS)
CONTEXTS = tuple(f"kind-{c}" for c in CLUSTERS)
#: reuse clusters that are already up and leave them up (development only)
ENV_REUSE = "CHAOSAA_TEST_KIND_REUSE"
#: what `kind up` may take on a loaded 2-core machine (measured: 3-7 min)
UP_TIMEOUT = 1500.0


def kind_environment() -> dict[str, str]:
    """The environment the tier runs chaosaa in.

    As given; where no node image is named and hack/kind-images has loaded its images
    (our machines: no registry), those images and its kind/kubectl. Control planes only
    (``CHAOSAA_KIND_WORKERS=0``) unless said otherwise: half the CPU and memory.
    """
    env = dict(os.environ)
    env.setdefault("CHAOSAA_KIND_WORKERS", "0")
    script = REPO / "hack" / "kind-images"
    if "CHAOSAA_KIND_NODE_IMAGE" in env or shutil.which("docker") is None:
        return env
    if subprocess.run(["bash", str(script), "--check"], capture_output=True).returncode != 0:
        return env
    node, base, bin_dir = subprocess.run(
        ["bash", str(script), "--print"], capture_output=True, text=True, check=True
    ).stdout.split()
    env["CHAOSAA_KIND_NODE_IMAGE"] = node
    env.setdefault("CHAOSAA_KIND_BASE_IMAGE", base)
    env["PATH"] = os.pathsep.join((bin_dir, env.get("PATH", "")))
    return env


def missing_tools(env: dict[str, str]) -> str | None:
    """Why kind cannot run here, or None."""
    path = env.get("PATH")
    absent = [t for t in ("docker", "kind", "kubectl") if shutil.which(t, path=path) is None]
    if absent:
        return f"{', '.join(absent)} not on PATH (make kind-images builds kind and kubectl)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, env=env)
    if info.returncode != 0:
        return f"no Docker engine (`docker info`: {info.stderr.strip()[:200]}); make docker-engine"
    return None


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str


@dataclass
class Kind:
    """Real kind clusters and the chaosaa CLI pointed at them."""

    env: dict[str, str]
    state_dir: Path

    @property
    def target_file(self) -> Path:
        return self.state_dir / "kind-target.yaml"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "chaosaa.cli.main", *args]

    def chaosaa(self, *args: str, timeout: float = 600) -> Finished:
        proc = subprocess.run(
            self.argv(*args), cwd=REPO, env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        return Finished(proc.returncode, proc.stdout, proc.stderr)

    def up(self) -> Finished:
        return self.chaosaa("kind", "up", "--state-dir", str(self.state_dir), timeout=UP_TIMEOUT)

    def down(self) -> Finished:
        return self.chaosaa("kind", "down", "--state-dir", str(self.state_dir))

    def run_gameday(
        self, gameday: str, report_dir: Path, *sets: str
    ) -> tuple[Finished, dict[str, Any]]:
        overrides = [a for s in sets for a in ("--set", s)]
        done = self.chaosaa(
            "run", gameday, "--report-dir", str(report_dir), "--plain", *overrides, timeout=600
        )
        path = report_dir / "report.json"
        return done, json.loads(path.read_text()) if path.exists() else {}

    def start_gameday(self, gameday: str, report_dir: Path, *sets: str) -> Running:
        overrides = [a for s in sets for a in ("--set", s)]
        argv = self.argv("run", gameday, "--report-dir", str(report_dir), "--plain", *overrides)
        proc = subprocess.Popen(
            argv, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        return Running(proc)

    # -- what is really there --------------------------------------------------------
    def docker(self, *args: str, timeout: float = 60) -> Finished:
        proc = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip
        return Finished(proc.returncode, proc.stdout, proc.stderr)

    def nodes(self, cluster: str | None = None) -> list[str]:
        label = f"{CLUSTER_LABEL}={cluster}" if cluster else CLUSTER_LABEL
        out = self.docker("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}")
        return sorted(out.stdout.split())

    def paused(self, nodes: Sequence[str]) -> dict[str, bool]:
        out = self.docker("inspect", "-f", "{{.Name}} {{.State.Paused}}", *nodes).stdout
        return {n.lstrip("/"): p == "true" for n, p in (line.split() for line in out.splitlines())}

    def node_rules(self, node: str) -> str:
        """chaosaa's nft table and chaosaa's root qdiscs in a node ('' when none)."""
        script = (
            "nft list table inet chaosaa 2>/dev/null; "
            "for d in /sys/class/net/*; do tc qdisc show dev ${d##*/} root; done "
            "| grep 'htb ca05:' || :"
        )
        return self.docker("exec", node, "sh", "-c", script).stdout.strip()

    def node_watchdogs(self, node: str) -> list[str]:
        out = self.docker("exec", node, "pgrep", "-af", WATCHDOG_MARK).stdout
        return out.splitlines()

    def kube_contexts(self) -> list[str]:
        out = subprocess.run(
            ["kubectl", "config", "get-contexts", "-o", "name"], env=self.env,
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        return [c for c in out.split() if c in CONTEXTS]

    def wait_for_lease(self, timeout: float = 30.0) -> None:
        """Until no run holds the kind lease (a killed run's lapses with its 15 s TTL)."""
        leases = list((Path.home() / ".chaosaa" / "kind").glob("lease-*.json"))
        deadline = time.time() + timeout
        for lease in leases:
            try:
                expires = float(json.loads(lease.read_text())["expires"])
            except (OSError, ValueError, KeyError):
                continue
            time.sleep(max(0.0, min(expires, deadline) - time.time()) + 0.1)


def host_watchdogs() -> list[str]:
    out = subprocess.run(["pgrep", "-af", WATCHDOG_MARK], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "pgrep" not in line]


class Running:
    """A `chaosaa run` in the background, read line by line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []

    def wait_for_lines(self, *needles: str, timeout: float) -> None:
        """Until every needle has shown up in the output, in any order."""
        assert self.proc.stdout is not None
        waiting = set(needles)
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            waiting = {n for n in waiting if n not in line}
        if waiting:
            tail = "".join(self.lines[-40:])
            raise AssertionError(f"no {sorted(waiting)} within {timeout:g}s:\n{tail}")

    def kill(self) -> float:
        """SIGKILL: no revert, no cleanup. Returns the monotonic time of the kill."""
        at = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        return at

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> float:
    """Poll ``check`` until true; the monotonic time the true answer came back."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:g}s")
        time.sleep(interval)
