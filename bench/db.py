"""Benchmark: the database systems (tier 6): canary-lag resolution, its agreement with the
exporter's lag, and `chaosaa lab up` / `down` time per system.

1. **Resolution**: postgres-ha (primary in us, hot standbys in eu and ap), canaries every
   100 ms polled every 50 ms; each canary's lag carries an error bound (half its
   bracketing interval, see chaosaa/canary/probe.py). Reported: the median and max bound
   over every canary seen on every link while replication flows.
2. **Agreement**: the us > eu replication link held (a TCP forwarder in the path, as the
   lab's link proxy holds it) for ``HOLD`` seconds; every 0.5 s the canary lag of us > eu
   beside postgres_exporter's ``pg_replication_lag`` in eu (scraped directly, no
   Prometheus in between). Reported: both peaks and the largest difference once both
   grow (the first second after the hold is left out: the exporter's figure is the age of
   the last replayed transaction, the canary's the age of the oldest pending canary).
3. **Lab up / down**: `chaosaa lab up --system NAME` (servers, exporters, nodes, router,
   link proxy, Prometheus, everything verified ready) and `chaosaa lab down`, timed from
   outside, ``REPS`` times per system.

Usage: python bench/db.py [--reps N] [--skip-lab] [--skip-lag]. Needs root for galera
(network namespaces) and the Debian packages of `make packages`; a missing system is
reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the TCP forwarder of the database tests

from chaosaa.lab.supervisor.databases import SYSTEM_NAMES, unavailable  # noqa: E402
from chaosaa.lab.systems import PostgresHA  # noqa: E402
from tests.db.helpers import canary_probe, exporter_value, forwarders, routes  # noqa: E402

REGIONS = ["us", "eu", "ap"]
STEADY = 5.0
HOLD = 10.0
#: each `lab up` / `lab down` may take this long before the benchmark gives up
LAB_TIME_LIMIT = 180


async def lag_agreement() -> int:
    reason = PostgresHA.unavailable()
    if reason is not None:
        print(f"skipped: postgres-ha: {reason}")
        return 0
    with tempfile.TemporaryDirectory(prefix="chaosaa-bench-db-") as tmp:
        system = PostgresHA(REGIONS, Path(tmp) / "logs")
        async with forwarders(system) as fwd, system.running(await routes(fwd), time_limit=180):
            held = fwd["replication:eu>us"]
            probe = canary_probe(system.databases(), interval=0.1, poll_interval=0.05)
            await probe.open()
            probe.start()
            try:
                await asyncio.sleep(STEADY)
                bounds = [b for c in probe.canaries for _, b in c.seen.values()]
                held.hold()
                held_at = time.monotonic()
                pairs: list[tuple[float, float | None, float | None]] = []
                while (elapsed := time.monotonic() - held_at) < HOLD:
                    await asyncio.sleep(0.5)
                    exporter = await exporter_value(system, "eu", "pg_replication_lag")
                    pairs.append((elapsed, probe.lag_now("us", "eu"), exporter))
                held.release()
                await asyncio.sleep(2.0)
            finally:
                held.release()
                await probe.close()
    if not bounds:
        print("no canary crossed a link in the steady state", file=sys.stderr)
        return 1
    both = [(t, c, e) for t, c, e in pairs if c is not None and e is not None]
    grown = [(t, c, e) for t, c, e in both if t >= 1.0]
    diffs = [abs(c - e) for _, c, e in grown]
    print(
        "| canaries seen | bound median | bound max | hold | samples | peak canary lag "
        "| peak pg_replication_lag | max diff |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {len(bounds)} | ±{statistics.median(bounds) * 1000:.1f} ms "
        f"| ±{max(bounds) * 1000:.1f} ms | {HOLD:g} s | {len(grown)} "
        f"| {max(c for _, c, _ in both):.2f} s | {max(e for _, _, e in both):.2f} s "
        f"| {max(diffs):.2f} s |"
    )
    return 0


def lab(args: list[str], state: Path) -> float:
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "chaosaa.cli.lab", args[0], "--state-dir", str(state)]
    subprocess.run([*cmd, *args[1:]], check=True, capture_output=True, timeout=LAB_TIME_LIMIT)
    return time.monotonic() - t0


def lab_times(reps: int) -> int:
    print("| system | runs | `lab up` median | max | `lab down` median | max |")
    print("|---|---|---|---|---|---|")
    for name in SYSTEM_NAMES:
        reason = unavailable(name)
        if reason is not None:
            print(f"| {name} | skipped: {reason} | | | | |")
            continue
        ups, downs = [], []
        for _ in range(reps):
            with tempfile.TemporaryDirectory(prefix="chaosaa-bench-lab-") as tmp:
                state = Path(tmp) / "lab"
                try:
                    ups.append(lab(["up", "--regions", ",".join(REGIONS), "--system", name], state))
                finally:
                    downs.append(lab(["down"], state))
        print(
            f"| {name} | {reps} | {statistics.median(ups):.1f} s | {max(ups):.1f} s "
            f"| {statistics.median(downs):.2f} s | {max(downs):.2f} s |"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2, help="lab up/down per system")
    parser.add_argument("--skip-lab", action="store_true")
    parser.add_argument("--skip-lag", action="store_true")
    args = parser.parse_args()
    code = 0
    if not args.skip_lag:
        print("### canary-lag resolution and agreement with the exporter (postgres-ha)\n")
        code |= asyncio.run(lag_agreement())
    if not args.skip_lab:
        print("\n### `chaosaa lab up` / `down` per system (3 regions)\n")
        code |= lab_times(max(1, args.reps))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
