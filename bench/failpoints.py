"""Benchmark: what a failpoint costs when nothing arms it (goal: free, i.e. well under 1 µs).

A run passes each failpoint a handful of times per fault, next to an HTTP call that takes
at least ~100 µs; this measures one pass of ``await failpoint(name)`` with no point
armed, and with another point armed (the dict is not empty then), against an empty loop
and against a bare dict lookup. Prints a markdown table.
Usage: python bench/failpoints.py [PASSES]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from chaosaa import failpoints
from chaosaa.failpoints import failpoint

REPEATS = 7
GOAL_NS = 1000.0


async def per_pass(passes: int) -> dict[str, float]:
    """Nanoseconds per pass of each variant, net of the empty loop (best of REPEATS)."""
    table: dict[str, list[float]] = {"empty loop": [], "dict lookup": [], "failpoint": []}
    armed = failpoints.armed()
    lookup = armed.get
    for _ in range(REPEATS):
        t0 = time.perf_counter_ns()
        for _ in range(passes):
            pass
        table["empty loop"].append((time.perf_counter_ns() - t0) / passes)
        t0 = time.perf_counter_ns()
        for _ in range(passes):
            lookup("inject.after")
        table["dict lookup"].append((time.perf_counter_ns() - t0) / passes)
        t0 = time.perf_counter_ns()
        for _ in range(passes):
            await failpoint("inject.after")
        table["failpoint"].append((time.perf_counter_ns() - t0) / passes)
    empty = min(table["empty loop"])
    return {
        name: min(values) - (0 if name == "empty loop" else empty) for name, values in table.items()
    }


def main() -> int:
    passes = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    failpoints.configure(None)
    unset = asyncio.run(per_pass(passes))
    failpoints.configure("revert.before=sleep(1s)")  # another point armed: a non-empty dict
    other = asyncio.run(per_pass(passes))
    failpoints.configure(None)
    print(f"{passes:,} passes, best of {REPEATS}; ns per pass, net of an empty loop")
    print()
    print("| CHAOSAA_FAILPOINTS | dict lookup | `await failpoint(...)` | goal |")
    print("|---|---|---|---|")
    ok = True
    for label, row in (("unset", unset), ("another point armed", other)):
        ok = ok and row["failpoint"] < GOAL_NS
        print(
            f"| {label} | {row['dict lookup']:.0f} ns | {row['failpoint']:.0f} ns | "
            f"< {GOAL_NS:.0f} ns ({'meets' if row['failpoint'] < GOAL_NS else 'misses'}) |"
        )
    print(
        f"\nmedian of the two: {statistics.median([unset['failpoint'], other['failpoint']]):.0f} ns"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
