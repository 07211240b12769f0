"""Run every benchmark in turn (`make bench`); copy the tables into docs/benchmarks.md.

Each benchmark is its own script, bounded in time, printing a markdown table. Scripts
whose prerequisites are missing (e.g. Go for vegeta/Toxiproxy, the Kubernetes binaries)
say so and are skipped; the exit code is non-zero if any benchmark failed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "cold_start.py",
    "run_overhead.py",
    "traffic.py",
    "lab_proxy.py",
    "lab_faults.py",
    "db.py",
    "k8s_faults.py",
    "kind_faults.py",
    "operator.py",
]


def main() -> int:
    failed = []
    for name in ORDER:
        script = HERE / name
        if not script.exists():
            continue
        print(f"\n## {name}\n", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, str(script)], check=False)
        print(f"\n({name}: exit {proc.returncode}, {time.monotonic() - t0:.0f}s)", flush=True)
        if proc.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
