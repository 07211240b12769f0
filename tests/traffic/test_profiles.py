"""Per-region load profiles against a real HTTP service: every home gets its own rate and
shape within 2 %, in one process and spread over worker processes."""

from __future__ import annotations

import asyncio
import itertools
import math
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from chaosaa.spec.traffic import Traffic
from chaosaa.traffic import TrafficGenerator, load_plan, parse_write_value
from chaosaa.traffic.profile import segments
from tests.traffic.service import SwitchableService

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]

SECONDS = 3.0
LOAD = {
    "us": {"rate": 200},
    "eu": {"stages": [{"type": "constant", "rate": 100, "duration": "3s"}]},
    # 50 -> 250 over 2 s, then a staircase 250 -> 150 in 2 steps (200, 150)
    "ap": {
        "rate": 50,
        "stages": [
            {"type": "ramp", "to": 250, "duration": "2s"},
            {"type": "step", "to": 150, "steps": 2, "duration": "1s"},
        ],
    },
}


def within(actual: float, expected: float, share: float = 0.02) -> bool:
    """Within ``share`` of ``expected``, give or take the one request a count rounds off."""
    return abs(actual - expected) <= share * expected + 1


def test_stages_make_the_rates_they_describe() -> None:
    traffic = Traffic.model_validate({"load": LOAD})
    plan = load_plan(traffic, ["us", "eu", "ap"])
    assert plan.rate_by_home(0.0) == {"us": 200, "eu": 100, "ap": 50}
    assert plan.rate_by_home(1.0)["ap"] == pytest.approx(150)
    assert plan.rate_by_home(2.2)["ap"] == pytest.approx(200)
    assert plan.rate_by_home(2.7)["ap"] == pytest.approx(150)
    assert plan.rate_by_home(60)["ap"] == pytest.approx(150)  # the last rate holds
    assert plan.peak_rate == pytest.approx(200 + 100 + 250)
    due = Counter(plan.homes[h] for t, _seq, h in plan.schedule(span=SECONDS))
    expected = plan.expected_by_home(0, SECONDS)
    assert expected == pytest.approx({"us": 600, "eu": 300, "ap": 300 + 175})
    for home, n in expected.items():
        assert abs(due[home] - n) <= 1
    assert "50->250 req/s (t=0s-2s)" in " ".join(plan.describe())


def test_a_ramp_from_zero_and_a_zero_rate_stage_send_what_they_should() -> None:
    segs = segments(0.0, [])  # nothing at all
    assert segs[-1].count == 0
    traffic = Traffic.model_validate(
        {
            "load": {
                "us": {
                    "stages": [
                        {"type": "ramp", "from": 0, "to": 100, "duration": "2s"},
                        {"type": "constant", "rate": 0, "duration": "1s"},
                        {"type": "constant", "rate": 10, "duration": "1s"},
                    ]
                }
            }
        }
    )
    times = [t for t, _s, _h in load_plan(traffic, ["us"]).schedule(span=10.0)]
    assert len([t for t in times if t < 2]) == 100  # the triangle: 100 * 2 / 2
    assert not [t for t in times if 2 <= t < 3]  # rate 0: silence
    assert len([t for t in times if 3 <= t < 4]) == 10
    gaps = [b - a for a, b in itertools.pairwise(times) if b < 2]
    assert gaps == sorted(gaps, reverse=True)  # a rising rate: ever shorter gaps


@pytest.mark.parametrize("workers", [0, 2])
async def test_per_region_profiles_hit_their_rates_within_two_percent(workers: int) -> None:
    traffic = Traffic.model_validate({"load": LOAD, "writeRatio": 0.3, "keys": 50, "timeout": "3s"})
    async with SwitchableService("eu") as svc:
        gen = TrafficGenerator.from_spec(
            traffic, svc.url, regions=["us", "eu", "ap"], run_id="prof", seed=3, workers=workers
        )
        await gen.run(SECONDS, drain_timeout=4.0)
    assert gen.started_at is not None
    plan = gen.plan
    samples = gen.samples()
    assert all(s.ok for s in samples), Counter(s.error for s in samples)
    # What the server saw, per home, per second of the run
    t0 = gen.started_at
    arrivals = Counter((a.home, math.floor(a.at - t0)) for a in svc.arrivals)
    for second in range(int(SECONDS)):
        expected = plan.expected_by_home(second, second + 1)
        for home, n in expected.items():
            assert within(arrivals[(home, second)], n), (home, second, arrivals, expected)
    # ... and in total, every request of the schedule was sent and answered once
    total = plan.expected_by_home(0, SECONDS)
    by_home = Counter(s.home for s in samples)
    for home, n in total.items():
        assert abs(by_home[home] - n) <= 1
    assert len(svc.arrivals) == len(samples) == gen.counters.ok
    # the ramp region's rate, measured from the send instants, follows its shape
    ap = sorted(s.sent_at - t0 for s in samples if s.home == "ap")
    assert within(len([t for t in ap if 1.0 <= t < 2.0]), 200)
    # writes of every worker went to one ledger, each value unique and well formed
    acked = gen.acked_writes()
    values = [w.value for w in acked]
    assert len(values) == len(set(values)) > 0
    assert all(parse_write_value(v) is not None for v in values)
    assert len(acked) == sum(s.write and 200 <= s.status < 300 for s in samples)


async def test_worker_processes_share_one_clock_and_one_log() -> None:
    async with SwitchableService("us") as svc:
        gen = TrafficGenerator(
            svc.url, rate=300, timeout=1.0, homes=["us", "eu"], run_id="w", seed=1, workers=3
        )
        await gen.run(1.0, drain_timeout=2.0)
    samples = gen.samples()
    assert len(samples) == 300 == gen.counters.scheduled == gen.counters.ok
    assert gen.counters.in_flight == 0
    sent = [s.sent_at for s in samples]
    assert sent == sorted(sent)
    # one schedule, interleaved: the gaps are one period however the workers split it
    gaps = sorted(b - a for a, b in itertools.pairwise(sent))
    assert gaps[len(gaps) // 2] == pytest.approx(1 / 300, abs=0.0005)
    assert Counter(s.home for s in samples) == {"us": 150, "eu": 150}
    # the server saw each request no earlier than the client says it left
    arrivals = sorted(a.at for a in svc.arrivals)
    assert min(a - s for a, s in zip(arrivals, sent, strict=True)) > -0.002
    assert all(s.send_error is not None for s in samples)


def _worker_pids(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"chaosaa.traffic.workers" in cmdline:
            pids.append(int(entry.name))
    return pids


def _alive(pids: list[int]) -> bool:
    return any(Path(f"/proc/{pid}").exists() for pid in pids)


async def test_workers_exit_when_their_parent_is_killed() -> None:
    async with SwitchableService("us") as svc:
        script = (
            "import asyncio, sys\n"
            "from chaosaa.traffic import TrafficGenerator\n"
            "async def main():\n"
            f"    gen = TrafficGenerator({svc.url!r}, rate=100, timeout=1, run_id='k', workers=2)\n"
            "    await gen.start()\n"
            "    print('started', flush=True)\n"
            "    await asyncio.sleep(30)\n"
            "asyncio.run(main())\n"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, cwd=ROOT
        )
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line.strip() == b"started"
            workers = _worker_pids(proc.pid)
            assert len(workers) == 2
            proc.kill()
            await proc.wait()
            deadline = time.monotonic() + 10
            while _alive(workers):
                assert time.monotonic() < deadline, "worker processes outlived their parent"
                await asyncio.sleep(0.05)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
