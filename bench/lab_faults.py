"""Benchmark: time to effect and time to revert of every lab fault type (goal <= 50 ms).

Starts a real 3-region lab (``chaosaa.lab.control.up``) in a temporary state directory
and drives each fault through ``chaosaa.targets.lab.LabTarget`` exactly as the engine
does: time to effect = from just before ``inject()`` until ``verify_effect()`` first
returns True, polled every ``LabTarget.verify_interval`` (10 ms); time to revert likewise from just
before ``revert()`` until ``verify_reverted()`` is True. Each fault type is repeated N
times (default 10); every wait is bounded. Prints a markdown table (p50 and max).
Usage: python bench/lab_faults.py [REPETITIONS]
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from chaosaa.lab import control
from chaosaa.spec.faults import Fault
from chaosaa.spec.model import Target as TargetSpec
from chaosaa.targets.base import AppliedFault, TargetOptions, target_for
from chaosaa.targets.lab import LabTarget

GOAL = 0.05
VERIFY_LIMIT = 5.0
REGIONS = ("us", "eu", "ap")

CASES: list[tuple[str, dict[str, Any]]] = [
    ("blackhole regions [eu]", {"type": "blackhole", "regions": ["eu"]}),
    (
        "blackhole partition [us] vs [eu, ap]",
        {"type": "blackhole", "partition": [["us"], ["eu", "ap"]]},
    ),
    (
        "latency ap 100 ms ± 10 ms",
        {"type": "latency", "regions": ["ap"], "delay": "100ms", "jitter": "10ms"},
    ),
    (
        "replicationLag throttle ap 32 kbit",
        {"type": "replicationLag", "regions": ["ap"], "bandwidth": "32kbit"},
    ),
    (
        "replicationLag pause us→eu",
        {"type": "replicationLag", "links": [["us", "eu"]], "mode": "pause"},
    ),
    ("regionDown ap", {"type": "regionDown", "regions": ["ap"]}),
    ("bandwidth eu→us 1 mbit", {"type": "bandwidth", "links": [["eu", "us"]], "rate": "1mbit"}),
    ("packetLoss us 10 %", {"type": "packetLoss", "regions": ["us"], "percent": 10}),
]

_FAULT: TypeAdapter[Fault] = TypeAdapter(Fault)


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """The engine's wait: poll every verify_interval until true (bounded)."""
    deadline = time.monotonic() + VERIFY_LIMIT
    while not await check():
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{what}: not verified within {VERIFY_LIMIT}s")
        await asyncio.sleep(LabTarget.verify_interval)


async def _one(target: LabTarget, fault: Fault) -> tuple[float, float]:
    t0 = time.monotonic()
    applied: AppliedFault = await target.inject(fault, ttl=10)
    await _until(lambda: target.verify_effect(applied), f"{fault.name} effect")
    effect = time.monotonic() - t0
    t1 = time.monotonic()
    await target.revert(applied)
    await _until(lambda: target.verify_reverted(applied), f"{fault.name} revert")
    return effect, time.monotonic() - t1


async def bench(state: Path, repetitions: int) -> list[tuple[str, list[float], list[float]]]:
    spec = TargetSpec.model_validate({"kind": "lab", "regions": {r: {} for r in REGIONS}})
    target = target_for(spec, TargetOptions(run_id="bench", state_dir=str(state), ephemeral=False))
    assert isinstance(target, LabTarget)
    await target.open()
    out = []
    try:
        for label, body in CASES:
            effects, reverts = [], []
            for i in range(repetitions):
                fault = _FAULT.validate_python({"name": f"f{i}", "duration": "30s", **body})
                effect, revert = await _one(target, fault)
                effects.append(effect)
                reverts.append(revert)
                await asyncio.sleep(0.1)  # let held connections drain before the next one
            out.append((label, effects, reverts))
    finally:
        await target.rollback()
        await target.close()
    return out


def _ms(v: float) -> str:
    return f"{v * 1000:.0f} ms"


def main() -> int:
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    state = Path(tempfile.mkdtemp(prefix="chaosaa-bench-faults-"))
    started = time.monotonic()
    control.up(list(REGIONS), state, timeout=90)
    try:
        t0 = time.monotonic()
        results = asyncio.run(bench(state, repetitions))
        took = time.monotonic() - t0
    finally:
        control.down(state)
        shutil.rmtree(state, ignore_errors=True)
    print(f"| fault ({repetitions}x each) | effect p50 | effect max | revert p50 | revert max |")
    print("|---|---|---|---|---|")
    worst = 0.0
    for label, effects, reverts in results:
        worst = max(worst, statistics.median(effects), statistics.median(reverts))
        print(
            f"| {label} | {_ms(statistics.median(effects))} | {_ms(max(effects))} "
            f"| {_ms(statistics.median(reverts))} | {_ms(max(reverts))} |"
        )
    verdict = "meets" if worst <= GOAL else "misses"
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    print(
        f"\nworst p50 {_ms(worst)}: {verdict} the {_ms(GOAL)} goal; "
        f"nproc: {os.cpu_count()}, CPU: {cpu}, Python: {platform.python_version()}; "
        f"faults took {took:.0f} s (lab up/down {time.monotonic() - started - took:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
