"""Start, inspect and stop a lab from the command line (synchronous client side).

``up`` spawns the supervisor detached (its own session, so it outlives the CLI), then
polls its status API until every component is healthy, reporting progress; ``down`` asks
it to stop and waits until its process and every port it owned are gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaosaa.errors import EnvironmentError_, InvalidInputError
from chaosaa.lab._procfs import process_state
from chaosaa.lab.capacity import Capacity
from chaosaa.lab.paths import (
    DEFAULT_REGIONS,
    ENV_PROMETHEUS_BIN,
    StatePaths,
    child_environment,
    resolve_state_dir,
    validate_regions,
)
from chaosaa.lab.supervisor.databases import SYSTEM_NAMES, unavailable
from chaosaa.lab.systems.netns import PREFIX as NETNS_PREFIX

INSTALL_HINT = (
    "the lab needs the 'prometheus' binary on PATH: install it with "
    "`apt-get install prometheus` (Debian/Ubuntu), or point "
    f"{ENV_PROMETHEUS_BIN} at a Prometheus 2.x binary"
)


class LabError(EnvironmentError_):
    """The lab could not be started, reached or stopped."""


class LabNotRunningError(LabError):
    """No lab runs in the given state directory."""


class LabAlreadyRunningError(LabError):
    """A lab already runs in the given state directory."""


class PrometheusMissingError(LabError):
    """The prometheus binary is not installed."""


class SystemUnavailableError(LabError):
    """The system asked for cannot run on this machine (a package missing, not root)."""


#: how long ``up`` waits by default for the demo, and for a database system to start
DEMO_TIMEOUT = 60.0
DATABASE_TIMEOUT = 300.0


Progress = Callable[[str, bool, str | None], None]

#: supervisors started by this process; kept so they can be reaped (no zombie, and no
#: "subprocess still running" ResourceWarning when the Popen object is collected).
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class RunningLab:
    state_dir: Path
    pid: int
    supervisor_url: str


def find_prometheus() -> str:
    explicit = os.environ.get(ENV_PROMETHEUS_BIN)
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise PrometheusMissingError(
            f"{ENV_PROMETHEUS_BIN}={explicit} is not executable; " + INSTALL_HINT
        )
    found = shutil.which("prometheus")
    if not found:
        raise PrometheusMissingError(INSTALL_HINT)
    return found


def http_json(method: str, url: str, body: Any = None, timeout: float = 3.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def _pid_is_supervisor(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"chaosaa.lab.supervisor" in cmdline


def _process_gone(pid: int) -> bool:
    return process_state(pid) in (None, "Z")


def running_lab(state_dir: Path) -> RunningLab | None:
    """The lab whose status file is in ``state_dir``, if its supervisor is alive."""
    paths = StatePaths(state_dir)
    try:
        doc = json.loads(paths.status.read_text())
    except (OSError, ValueError):
        return None
    pid = int(doc.get("pid", 0))
    if pid <= 0 or not _pid_is_supervisor(pid):
        return None
    return RunningLab(state_dir, pid, str(doc["supervisor"]))


def up(
    regions: list[str] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    progress: Progress | None = None,
    router_policy: dict[str, Any] | None = None,
    owner_pid: int | None = None,
    capacity: dict[str, Any] | None = None,
    system: str = "demo",
) -> dict[str, Any]:
    """Start a lab and return its status once every component is healthy.

    With ``owner_pid`` the lab is ephemeral: it stops by itself once that process exits.
    ``capacity``: region -> capacity document (:mod:`chaosaa.lab.capacity`).
    ``system``: what runs in the regions (``demo``, or a real database system); ``timeout``
    defaults to 60 s for the demo and 300 s for a database system.
    """
    try:
        region_list = validate_regions(list(regions or DEFAULT_REGIONS))
    except ValueError as exc:
        raise InvalidInputError(f"--regions: {exc}") from exc
    _check_capacity(capacity or {}, region_list)
    if system not in SYSTEM_NAMES:
        raise InvalidInputError(
            f"--system: unknown system {system!r}; choose one of {', '.join(SYSTEM_NAMES)}"
        )
    why = unavailable(system)
    if why is not None:
        raise SystemUnavailableError(f"--system {system}: cannot run here: {why}")
    if timeout is None:
        timeout = DEMO_TIMEOUT if system == "demo" else DATABASE_TIMEOUT
    prometheus = find_prometheus()
    root = resolve_state_dir(state_dir)
    paths = StatePaths(root)
    existing = running_lab(root)
    if existing:
        raise LabAlreadyRunningError(
            f"a lab is already running in {root} (supervisor pid {existing.pid}); "
            "see `chaosaa lab status` or stop it with `chaosaa lab down`"
        )
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.status.unlink(missing_ok=True)  # stale file from a crashed lab
    with paths.supervisor_log.open("ab") as logf:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chaosaa.lab.supervisor",
                "--state-dir",
                str(root),
                "--regions",
                ",".join(region_list),
                "--prometheus-bin",
                prometheus,
                "--router-policy",
                json.dumps(router_policy or {}),
                *(["--owner-pid", str(owner_pid)] if owner_pid is not None else []),
                "--capacity",
                json.dumps(capacity or {}),
                "--system",
                system,
            ],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # detached: survives the CLI and its terminal
            env=child_environment(),
        )
    _STARTED[proc.pid] = proc
    try:
        return _wait_ready(proc, paths, timeout, progress)
    except BaseException:
        _terminate(proc.pid, paths)
        _reap(proc.pid)
        raise


def _check_capacity(capacity: dict[str, Any], regions: list[str]) -> None:
    unknown = sorted(set(capacity) - set(regions))
    if unknown:
        raise InvalidInputError(
            f"--capacity: region(s) {', '.join(unknown)} not in the lab ({', '.join(regions)})"
        )
    for region, doc in capacity.items():
        try:
            Capacity.from_json(doc)
        except ValueError as exc:
            raise InvalidInputError(f"--capacity {region}: {exc}") from exc


def _wait_ready(
    proc: subprocess.Popen[bytes], paths: StatePaths, timeout: float, progress: Progress | None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: dict[str, bool] = {}
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(
                f"the lab supervisor exited with code {proc.returncode}:\n"
                + _tail(paths.supervisor_log)
            )
        lab = running_lab(paths.root)
        if lab is not None:
            with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
                status = http_json("GET", f"{lab.supervisor_url}/status", timeout=5.0)
                for name, comp in status.get("components", {}).items():
                    healthy = bool(comp.get("healthy"))
                    if progress and seen.get(name) != healthy:
                        progress(name, healthy, comp.get("detail"))
                    seen[name] = healthy
                if status.get("phase") == "ready":
                    return status
                if status.get("phase") == "failed":
                    break
        time.sleep(0.2)
    raise LabError(_not_ready_message(status, paths))


def _not_ready_message(status: dict[str, Any], paths: StatePaths) -> str:
    comps = status.get("components", {})
    if not comps:
        return "the lab supervisor did not report status in time:\n" + _tail(paths.supervisor_log)
    lines = [f"the lab did not come up: {p}" for p in status.get("problems") or []]
    if status.get("phase") == "failed" and lines:
        return "\n".join(lines)
    lines.append("the lab did not come up; components not healthy:")
    for name, comp in comps.items():
        if not comp.get("healthy"):
            lines.append(f"  {name}: {comp.get('detail')}")
            log_path = paths.logs / f"{name}.log"
            if log_path.exists():
                lines.append(_tail(log_path, 8, indent="    "))
    return "\n".join(lines)


def _tail(path: Path, lines: int = 20, indent: str = "  ") -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"{indent}(no log at {path})"
    return "\n".join(indent + line for line in text)


def status(state_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    root = resolve_state_dir(state_dir)
    lab = running_lab(root)
    if lab is None:
        raise LabNotRunningError(f"no lab is running in {root}; start one with `chaosaa lab up`")
    try:
        result: dict[str, Any] = http_json("GET", f"{lab.supervisor_url}/status", timeout=10.0)
    except (OSError, ValueError) as exc:
        raise LabError(f"the lab supervisor (pid {lab.pid}) did not answer: {exc}") from exc
    return result


def down(state_dir: str | os.PathLike[str] | None = None, timeout: float = 60.0) -> bool:
    """Stop the lab in ``state_dir``; returns False if none was running.

    A lab whose supervisor was killed leaves no process (they die with it), but may leave
    a database system's data directory and network namespaces: those are removed too.
    """
    root = resolve_state_dir(state_dir)
    paths = StatePaths(root)
    leftovers = _system_leftovers(paths)
    lab = running_lab(root)
    if lab is None:
        _remove_leftovers(paths, leftovers)
        _reap_exited()  # a supervisor of ours that died (killed) is reaped here
        return False
    with contextlib.suppress(OSError, ValueError):
        http_json("POST", f"{lab.supervisor_url}/shutdown", timeout=3.0)
    if not _wait_gone(lab.pid, timeout):
        _terminate(lab.pid, paths)
    _remove_leftovers(paths, leftovers)
    _reap(lab.pid)
    return True


def _system_leftovers(paths: StatePaths) -> dict[str, list[str]]:
    """What a database system of the lab in ``paths`` would leave if its supervisor died."""
    try:
        doc = json.loads(paths.status.read_text())
        found = doc["system"]["leftovers"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {k: [str(v) for v in found.get(k, [])] for k in ("dataDirs", "namespaces")}


def _remove_system_leftovers(leftovers: dict[str, list[str]]) -> None:
    for path in leftovers.get("dataDirs", []):
        if Path(path).name.startswith("chaosaa-"):
            shutil.rmtree(path, ignore_errors=True)
    for name in leftovers.get("namespaces", []):
        if name.startswith(NETNS_PREFIX) and Path("/run/netns", name).exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _reap(pid: int) -> None:
    proc = _STARTED.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)


def _reap_exited() -> None:
    for pid, proc in list(_STARTED.items()):
        if proc.poll() is not None:
            del _STARTED[pid]


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _process_gone(pid):
            return True
        time.sleep(0.05)
    return _process_gone(pid)


def _terminate(pid: int, paths: StatePaths) -> None:
    """SIGTERM, then SIGKILL of the whole process group (children die with it too)."""
    leftovers = _system_leftovers(paths)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, 8.0):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _wait_gone(pid, 3.0)
    _remove_leftovers(paths, leftovers)


def _remove_leftovers(paths: StatePaths, system: dict[str, list[str]] | None = None) -> None:
    _remove_system_leftovers(system or {})
    paths.remove_run_state()
    paths.lock.unlink(missing_ok=True)
