"""Soak: N back-to-back GameDays against one lab; nothing may grow (issue 11).

Starts one real 3-region lab, then runs N short GameDays (default 50) one after the other
in this one process, as the operator does: each ``Run.execute`` on its own event loop,
its report built and written (report.html's chart included). The fault type rotates
(blackhole, regionDown, latency, replicationLag pause), each run holds a lostWrites SLO.
After every run it samples:

- what the run may have left in the lab: supervisor faults, link-proxy conditions, node
  processes in state T, the lease;
- the lab's processes (the supervisor and its children): how many, their open files,
  their RSS;
- the runner (this process): open files, threads, child processes, RSS.

It prints a markdown table: each measure after the first run, over the WINDOW runs after
the warm-up and over the last WINDOW runs (median and max: connection pools make open
files move a little from run to run), and the growth between the two windows. It exits 1
if anything was left behind, a run did not pass, a write was lost, a count grew past the
first window's max, or memory grew beyond its goal (the lab's Prometheus is reported
apart: its TSDB grows with time by design).
Usage: python bench/soak.py [RUNS]
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from chaosaa.engine.reporting import build_report
from chaosaa.engine.run import Run
from chaosaa.lab import control
from chaosaa.lab._procfs import process_state
from chaosaa.report.write import write_reports
from chaosaa.spec.loader import validate_gameday
from chaosaa.targets.base import TargetOptions

#: runs before the baseline is taken (imports, caches, the first matplotlib figure)
WARMUP_RUNS = 5
#: runs per compared window (the baseline after the warm-up, and the last runs)
WINDOW = 10
#: memory growth from the baseline to the last run that is still "no growth"
RSS_GOAL_MIB = {"runner": 20.0, "lab": 40.0}
FAULTS: list[dict[str, Any]] = [
    {"type": "blackhole", "regions": ["eu"]},
    {"type": "regionDown", "regions": ["ap"]},
    {"type": "latency", "regions": ["us"], "delay": "100ms"},
    {"type": "replicationLag", "links": [["us", "eu"]], "mode": "pause"},
]


def gameday(i: int) -> dict[str, Any]:
    fault = {"name": f"f{i}", "duration": "2s", "ttl": "3s", **FAULTS[i % len(FAULTS)]}
    return {
        "apiVersion": "chaosaa.io/v1alpha1",
        "kind": "GameDay",
        "metadata": {"name": f"soak-{i}"},
        "spec": {
            "target": {"kind": "lab", "regions": {"us": {}, "eu": {}, "ap": {}}},
            "traffic": {"rate": 50, "writeRatio": 0.3, "warmup": "500ms"},
            "recovery": {"settle": "500ms", "convergenceTimeout": "15s"},
            "faults": [fault],
            "slos": [
                {"name": "no-lost-writes", "type": "lostWrites", "max": 0},
                {"name": "errors", "type": "errorRate", "max": 1},
            ],
        },
    }


# --------------------------------------------------------------------------- /proc


def _status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def rss_mib(pid: int) -> float:
    return int(_status(pid)["VmRSS"].split()[0]) / 1024


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> list[int]:
    """Every descendant of ``pid``."""
    by_parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(_status(int(entry))["PPid"])
            except (OSError, KeyError, ValueError):
                continue
            by_parent.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


# --------------------------------------------------------------------------- samples


def leftovers(status: dict[str, Any]) -> list[str]:
    faults = get(f"{status['supervisor']}/faults")["faults"]
    out = [f"fault {f['id']}" for f in faults if f.get("state") == "active"]
    out += [
        f"condition {c['id']}" for c in get(f"{status['proxy']['admin']}/conditions")["conditions"]
    ]
    live = get(f"{status['supervisor']}/status")["regions"]
    out += [f"node {r} stopped" for r, st in live.items() if process_state(st["pid"]) == "T"]
    holder = get(f"{status['supervisor']}/lease")["holder"]
    return out + ([f"lease {holder}"] if holder else [])


def sample(lab_pid: int) -> dict[str, float]:
    lab = [lab_pid, *children(lab_pid)]
    me = os.getpid()
    mine = [p for p in children(me) if p not in lab]
    return {
        "lab processes": len(lab),
        "lab open files": sum(open_files(p) for p in lab),
        "lab RSS (MiB)": sum(rss_mib(p) for p in lab),
        "lab RSS without Prometheus (MiB)": sum(
            rss_mib(p) for p in lab if b"prometheus" not in _cmdline(p)
        ),
        "runner open files": open_files(me),
        "runner threads": threading.active_count(),
        "runner OS threads": int(_status(me)["Threads"]),
        "runner child processes": len(mine),
        "runner RSS (MiB)": rss_mib(me),
    }


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0", 1)[0]


#: must not grow at all from the baseline to the last run
COUNTS = (
    "lab processes",
    "lab open files",
    "runner open files",
    "runner threads",
    "runner OS threads",
    "runner child processes",
)
#: counts that move with connection pools: only their median may not pass the baseline's max
FLUCTUATE = ("lab open files",)
RSS_GOALS: dict[str, float] = {
    "runner RSS (MiB)": RSS_GOAL_MIB["runner"],
    "lab RSS without Prometheus (MiB)": RSS_GOAL_MIB["lab"],
}


def run_once(i: int, state: Path, reports: Path) -> tuple[int, float, int, int]:
    """(exit code, seconds, acknowledged writes, lost writes) of GameDay ``i``."""
    gd = validate_gameday(gameday(i), f"soak-{i}.yaml")
    options = TargetOptions(run_id=f"soak-{i}", state_dir=str(state), ephemeral=False)
    t0 = time.monotonic()
    outcome = asyncio.run(Run(gd, options).execute())
    report = build_report(outcome)
    write_reports(report, reports / f"run-{i}")
    took = time.monotonic() - t0
    return report.exit_code, took, len(outcome.acked), outcome.lost_writes


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    problems: list[str] = []
    samples: list[dict[str, float]] = []
    codes, durations, acked, lost = [], [], 0, 0
    with tempfile.TemporaryDirectory(prefix="chaosaa-soak-") as tmp:
        state = Path(tmp) / "lab"
        status = control.up(["us", "eu", "ap"], state, timeout=90)
        try:
            for i in range(runs):
                code, took, n, gone = run_once(i, state, Path(tmp) / "reports")
                codes.append(code)
                durations.append(took)
                acked, lost = acked + n, lost + gone
                # the router fails back with hysteresis: let it settle between runs
                time.sleep(1.0)
                left = leftovers(status)
                if left:
                    problems.append(f"run {i}: left {', '.join(left)}")
                samples.append(sample(status["pid"]))
                print(f"run {i}: exit {code}, {took:.1f}s, {n} writes, {gone} lost", flush=True)
        finally:
            control.down(state)
    problems += [f"run {i}: exit {c}" for i, c in enumerate(codes) if c != 0]
    if lost:
        problems.append(f"{lost} acknowledged writes lost")
    # Connection pools (keep-alive, replication, health checks) make open files move by a
    # few from one sample to the next: windows of WINDOW runs are compared, not two runs.
    base = samples[WARMUP_RUNS : WARMUP_RUNS + WINDOW] or samples
    last = samples[-WINDOW:]
    print()
    print(
        f"{runs} GameDays back to back against one lab, in one process; machine: "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    print(
        f"run length median {statistics.median(durations):.1f}s (max {max(durations):.1f}s); "
        f"{acked} acknowledged writes, {lost} lost; exit codes {sorted(set(codes))}"
    )
    print()
    first = f"runs {WARMUP_RUNS + 1}-{WARMUP_RUNS + len(base)}"
    print(
        f"| measure | after run 1 | {first}: median (max) | last {len(last)} runs | growth | goal |"
    )
    print("|---|---|---|---|---|---|")
    for key in samples[0]:
        b = [s[key] for s in base]
        f = [s[key] for s in last]
        growth = statistics.median(f) - statistics.median(b)
        if key in COUNTS:
            goal = "none beyond the first window's max"
            if statistics.median(f) > max(b) or (key not in FLUCTUATE and max(f) > max(b)):
                problems.append(f"{key} grew: {max(b):g} -> {max(f):g}")
        elif key in RSS_GOALS:
            goal = f"<= {RSS_GOALS[key]:g} MiB"
            if growth > RSS_GOALS[key]:
                problems.append(f"{key} grew by {growth:.1f} MiB")
        else:
            goal = "reported (its TSDB grows with time)"
        cells = [
            f"{samples[0][key]:.0f}" if key in COUNTS else f"{samples[0][key]:.1f}",
            f"{statistics.median(b):.1f} ({max(b):.1f})",
            f"{statistics.median(f):.1f} ({max(f):.1f})",
            f"{growth:+.1f}",
        ]
        print(f"| {key} | " + " | ".join(cells) + f" | {goal} |")
    print()
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(
        "leftover faults after every run: "
        + ("none" if not any("left" in p for p in problems) else "see above")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
