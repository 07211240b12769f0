"""kind: `chaosaa kind up` wall time, time to effect / revert of each kind fault (one per
region, three regions in parallel), and failover measured by the probe vs the demo
router's own log.

Uses the clusters chaosaa-us/eu/ap when they are up (then `kind up` is not timed unless
``--up``); otherwise brings them up (timed) and takes them down at the end (``--keep``
leaves them). On our machines (no registry) the images of hack/kind-images and, unless
CHAOSAA_KIND_WORKERS says otherwise, control planes only (tests/kind/clusters.py).

Faults are injected through the kind target in-process, exactly as the engine does it:
from the inject request until ``verify_effect`` holds (polled every
``KindTarget.verify_interval``), and from the revert request until ``verify_reverted``
holds. Failover: ``chaosaa run experiments/kind/region-down.yaml``; the probe's figure is
the SLO's, the router's is its ``failover`` event (``/router/events``) minus the instant
the fault was in place.

    python bench/kind_faults.py [--rounds 5] [--failovers 3] [--up] [--keep] [--out FILE]

Prints markdown tables (seconds; goals: effect and revert <= 1 s, the two failover
figures within one inter-request gap of the eu clients).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaosaa.errors import ChaosaaError
from chaosaa.spec.loader import load_gameday, validate_gameday
from chaosaa.targets.base import AppliedFault, TargetOptions
from chaosaa.targets.kind import KindTarget
from tests.kind.clusters import CLUSTERS, REPO, Kind, kind_environment, missing_tools

REGIONS = ("us", "eu", "ap")
NEXT = {"us": "eu", "eu": "ap", "ap": "us"}
POLL = KindTarget.verify_interval
KINDS = (
    "regionDown",
    "blackhole",
    "packetLoss",
    "bandwidth",
    "replicationLag (pause)",
    "replicationLag (throttle)",
    "latency",
)
REGION_DOWN = REPO / "experiments" / "kind" / "region-down.yaml"


def fault_specs(kind: str, round_no: int) -> list[dict[str, Any]]:
    """One fault per region, all three injected at once."""
    out = []
    for r in REGIONS:
        slug = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")
        base: dict[str, Any] = {"name": f"{slug}-{r}-{round_no}", "duration": "60s"}
        link = {"links": [[r, NEXT[r]]]}
        out.append(
            {
                "regionDown": {**base, "type": "regionDown", "regions": [r]},
                "blackhole": {**base, "type": "blackhole", "regions": [r]},
                "packetLoss": {**base, "type": "packetLoss", **link, "percent": 10},
                "bandwidth": {**base, "type": "bandwidth", **link, "rate": "10mbit"},
                "latency": {**base, "type": "latency", **link, "delay": "50ms"},
                "replicationLag (pause)": {
                    **base, "type": "replicationLag", **link, "mode": "pause",
                },
                "replicationLag (throttle)": {
                    **base, "type": "replicationLag", **link, "bandwidth": "64kbit",
                },
            }[kind]
        )  # fmt: skip
    return out


def gameday(faults: list[dict[str, Any]]) -> Any:
    doc = json.loads(json.dumps(_TARGET_DOC))
    doc["spec"]["faults"] = faults
    return validate_gameday(doc, "bench.yaml")


_TARGET_DOC: dict[str, Any] = {
    "apiVersion": "chaosaa.io/v1alpha1",
    "kind": "GameDay",
    "metadata": {"name": "bench-kind"},
    "spec": {
        "target": {
            "kind": "kind",
            "url": "http://127.0.0.1:20080",
            "regions": {r: {"cluster": f"chaosaa-{r}"} for r in REGIONS},
        }
    },
}


async def until(check: Callable[[], Awaitable[bool]], limit: float = 30.0) -> float:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > limit:
            raise TimeoutError(f"not verified within {limit:g} s")
        await asyncio.sleep(POLL)
    return time.monotonic()


async def one_round(target: KindTarget, faults: list[Any]) -> tuple[list[float], list[float]]:
    async def effect(f: Any) -> tuple[AppliedFault[Any, Any], float]:
        t0 = time.monotonic()
        applied = await target.inject(f, 10.0)
        return applied, await until(lambda: target.verify_effect(applied)) - t0

    results = await asyncio.gather(*(effect(f) for f in faults))

    async def revert(applied: AppliedFault[Any, Any]) -> float:
        t0 = time.monotonic()
        await target.revert(applied)
        return await until(lambda: target.verify_reverted(applied)) - t0

    reverts = await asyncio.gather(*(revert(a) for a, _ in results))
    return [t for _, t in results], list(reverts)


async def fault_table(rounds: int) -> list[str]:
    target = KindTarget(gameday([]).spec.target, TargetOptions(run_id="bench-kind"))
    await target.open()
    await target.acquire_lease("bench-kind", 600)
    rows = []
    try:
        for kind in KINDS:
            probe = gameday(fault_specs(kind, 0)).spec.faults
            try:
                t0 = time.monotonic()
                await target.preflight(list(probe))
            except ChaosaaError as exc:
                reason = str(exc).split(": ", 1)[-1]
                took = time.monotonic() - t0
                rows.append(f"| {kind} | refused in preflight ({took:.2f} s): {reason} | | | |")
                print(rows[-1], flush=True)
                continue
            effects: list[float] = []
            reverts: list[float] = []
            for n in range(rounds):
                e, r = await one_round(target, list(gameday(fault_specs(kind, n)).spec.faults))
                effects += e
                reverts += r
                await asyncio.sleep(1.0)  # the regions settle between rounds (not timed)
            rows.append(
                f"| {kind} | {statistics.median(effects):.3f} | {max(effects):.3f} | "
                f"{statistics.median(reverts):.3f} | {max(reverts):.3f} |"
            )
            print(rows[-1], flush=True)
    finally:
        await target.release_lease("bench-kind")
    return rows


def failover_rows(kind: Kind, runs: int) -> list[str]:
    rate = float(load_gameday(REGION_DOWN).spec.traffic.rate)
    gap = len(REGIONS) / rate  # the eu clients' share of the traffic, round-robin homes
    rows = []
    for n in range(runs):
        with tempfile.TemporaryDirectory() as out:
            done = kind.chaosaa("run", str(REGION_DOWN), "--report-dir", out, "--plain")
            report = json.loads((Path(out) / "report.json").read_text())
        slo = next(s for s in report["slos"] if s["name"] == "failover")
        details = slo["details"]
        events = [
            e for e in report["timeline"]
            if e["event"] == "target.router.failover" and e["detail"].get("from") == "eu"
        ]  # fmt: skip
        if done.code != 0 or not events:
            rows.append(f"| {n + 1} | run exit {done.code}: {report.get('reason')} | | | |")
            continue
        router_at = datetime.fromisoformat(events[0]["at"].replace("Z", "+00:00")).timestamp()
        router = router_at - details["effectiveAt"]
        rows.append(
            f"| {n + 1} | {slo['measured']:.3f} | {router:.3f} | "
            f"{(slo['measured'] - router) * 1000:+.0f} ms | {gap * 1000:.0f} ms |"
        )
        print(rows[-1], flush=True)
        kind.wait_for_lease()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--up", action="store_true", help="time kind up (clusters must be down)")
    parser.add_argument("--keep", action="store_true", help="leave the clusters up")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    env = kind_environment()
    if reason := missing_tools(env):
        print(f"kind cannot run here: {reason}", file=sys.stderr)
        return 2
    kind = Kind(env, Path(tempfile.mkdtemp(prefix="chaosaa-bench-kind-")))
    up = bool(args.up or not all(kind.nodes(c) for c in CLUSTERS))
    lines = []
    if up:
        t0 = time.monotonic()
        done = kind.up()
        took = time.monotonic() - t0
        if done.code != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        workers = env.get("CHAOSAA_KIND_WORKERS", "1")
        lines += [f"`chaosaa kind up`, 3 clusters + demo (workers {workers}): {took:.0f} s", ""]
        print(lines[0], flush=True)
    try:
        rows = asyncio.run(fault_table(args.rounds))
        failovers = failover_rows(kind, args.failovers)
    finally:
        if up and not args.keep:
            kind.down()
    lines += [
        f"One fault per region, 3 regions in parallel, {args.rounds} rounds; seconds (goal <= 1 s)",
        "",
        "| fault | effect median | effect max | revert median | revert max |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Failover of experiments/kind/region-down.yaml, {args.failovers} runs: the probe's "
        "SLO vs the router's failover event (both from the fault in place)",
        "",
        "| run | probe | router | probe - router | inter-request gap (eu clients) |",
        "|---|---|---|---|---|",
        *failovers,
    ]
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
