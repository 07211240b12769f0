"""Benchmark: `chaosaa validate` cold start (goal <= 0.3 s).

Runs the installed `chaosaa` entry point N times in fresh processes and prints a markdown
row with the median, p90 and min wall time. Usage: python bench/cold_start.py [N]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.3


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    exe = shutil.which("chaosaa", path=str(Path(sys.executable).parent)) or shutil.which("chaosaa")
    if exe is None:
        print("chaosaa is not installed in this environment (make dev)", file=sys.stderr)
        return 2
    cmd = [exe, "validate", "-q", str(ROOT / "experiments" / "region-down.yaml")]
    subprocess.run(cmd, check=True)  # warm the page cache, not the interpreter
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        times.append(time.perf_counter() - t0)
    times.sort()
    med = statistics.median(times)
    p90 = times[int(0.9 * (len(times) - 1))]
    verdict = "meets" if med <= GOAL else "misses"
    print("| benchmark | runs | median | p90 | min | goal |")
    print("|---|---|---|---|---|---|")
    print(
        f"| `chaosaa validate` cold start | {n} | {med:.3f} s | {p90:.3f} s | {times[0]:.3f} s "
        f"| <= {GOAL} s ({verdict}) |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
