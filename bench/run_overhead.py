"""Benchmark: a run's fixed overhead beyond the GameDay's own durations (goal <= 2 s).

Starts one lab, then runs a GameDay whose nominal length is warm-up + fault + settle,
N times, both as a `chaosaa run` subprocess (what a user waits for, interpreter start
included) and in process (the engine alone). Overhead = wall time - nominal.
Usage: python bench/run_overhead.py [N]
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from chaosaa.engine.run import Run
from chaosaa.lab import control
from chaosaa.spec.loader import validate_gameday
from chaosaa.targets.base import TargetOptions

GOAL = 2.0
WARMUP, AFTER, DURATION, SETTLE = 1.0, 0.0, 2.0, 1.0
NOMINAL = WARMUP + AFTER + DURATION + SETTLE

DOC = {
    "apiVersion": "chaosaa.io/v1alpha1",
    "kind": "GameDay",
    "metadata": {"name": "overhead"},
    "spec": {
        "target": {"kind": "lab", "regions": {"us": {}, "eu": {}, "ap": {}}},
        "traffic": {"rate": 50, "warmup": f"{WARMUP:g}s"},
        "recovery": {"settle": f"{SETTLE:g}s"},
        "steadyState": [{"name": "up", "promql": "min(up)", "expect": ">= 1"}],
        "faults": [
            {
                "name": "lag",
                "type": "replicationLag",
                "links": [["us", "eu"]],
                "mode": "pause",
                "duration": f"{DURATION:g}s",
            }
        ],
        "slos": [
            {"name": "lag", "type": "replicationLag", "max": "60s", "canary": False},
            {"name": "no-lost-writes", "type": "lostWrites", "max": 0},
        ],
    },
}


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "lab"
        control.up(["us", "eu", "ap"], state, timeout=90)
        try:
            path = Path(tmp) / "overhead.yaml"
            path.write_text(yaml.safe_dump(DOC))
            cli, engine = [], []
            for i in range(n):
                t0 = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "chaosaa.cli.main",
                        "run",
                        str(path),
                        "--plain",
                        "--lab-state",
                        str(state),
                        "--no-ephemeral-lab",
                        "--report-dir",
                        str(Path(tmp) / f"r{i}"),
                    ],
                    check=True,
                    capture_output=True,
                )
                cli.append(time.perf_counter() - t0 - NOMINAL)
                gd = validate_gameday(DOC, "overhead.yaml")
                run = Run(
                    gd, TargetOptions(run_id=f"bench-{i}", state_dir=str(state), ephemeral=False)
                )
                t0 = time.perf_counter()
                outcome = asyncio.run(run.execute())
                engine.append(time.perf_counter() - t0 - NOMINAL)
                assert outcome.reason is None, outcome.reason
        finally:
            control.down(state)
    print(f"nominal GameDay length {NOMINAL:g}s (warm-up + fault + settle); {n} runs each")
    print()
    print("| measurement | median | max | goal |")
    print("|---|---|---|---|")
    for name, xs in (
        ("`chaosaa run` (subprocess) overhead", cli),
        ("engine overhead (in process)", engine),
    ):
        med = statistics.median(xs)
        verdict = "meets" if med <= GOAL else "misses"
        print(f"| {name} | {med:.2f} s | {max(xs):.2f} s | <= {GOAL:g} s ({verdict}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
