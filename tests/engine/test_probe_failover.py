"""Probe-based failoverTime agrees with the truth within its bound: one inter-request gap
plus the generator's send-time error p99.

A real HTTP service is switched off and on at instants the test records; the real
traffic generator drives it open loop; the measurement must land within its own stated
error bound (one inter-request gap plus send-time error p99) of the switch instants.
"""

from __future__ import annotations

import asyncio

import pytest

from chaosaa.measure.failover import failover_time_from_samples
from chaosaa.traffic.generator import TrafficGenerator
from tests.traffic.service import Mode, SwitchableService

pytestmark = pytest.mark.timeout(60)

RATE = 100.0  # requests per second: one gap = 10 ms
SUSTAIN = 2.0


@pytest.mark.parametrize("mode", ["fail", "reset"])
@pytest.mark.parametrize("outage", [0.7, 1.9])
async def test_probe_failover_time_is_within_one_gap_of_the_truth(
    mode: Mode, outage: float
) -> None:
    async with SwitchableService("eu") as svc:
        gen = TrafficGenerator(
            svc.url, rate=RATE, write_ratio=0.3, timeout=1.0, keys=50, homes=["eu"], run_id="probe"
        )
        await gen.start()
        try:
            await asyncio.sleep(1.0)
            off_at = svc.switch(mode)  # the fault takes effect here: t_effect
            await asyncio.sleep(outage)
            on_at = svc.switch("up")  # the service is healthy again from here
            await asyncio.sleep(SUSTAIN + 1.0)
        finally:
            await gen.stop(drain_timeout=2.0)
        end = on_at + SUSTAIN + 0.9
        fm = failover_time_from_samples(
            gen.samples(), off_at, threshold=0.99, sustain=SUSTAIN, end=end
        )
    truth = on_at - off_at
    assert fm.degraded and fm.recovered and not fm.no_data
    assert fm.error_bound_seconds is not None
    # the bound is one inter-request gap plus the send-time error p99 the generator measured
    assert fm.details["gap"] <= 3 / RATE
    assert fm.error_bound_seconds == pytest.approx(fm.details["gap"] + fm.details["sendErrorP99"])
    assert fm.measured is not None
    # one gap, plus the sub-millisecond flight time of a request sent just before on_at
    assert abs(fm.measured - truth) <= fm.error_bound_seconds + 0.002, (fm.measured, truth)


async def test_a_service_that_never_degrades_has_failover_zero() -> None:
    async with SwitchableService("us") as svc:
        gen = TrafficGenerator(
            svc.url, rate=RATE, write_ratio=0.3, timeout=1.0, keys=50, homes=["us"], run_id="calm"
        )
        await gen.start()
        await asyncio.sleep(0.5)
        t_effect = asyncio.get_running_loop().time() and __import__("time").time()
        await asyncio.sleep(SUSTAIN + 0.5)
        await gen.stop(drain_timeout=2.0)
        fm = failover_time_from_samples(
            gen.samples(), t_effect, sustain=SUSTAIN, end=t_effect + SUSTAIN + 0.4
        )
    assert not fm.degraded
    assert fm.measured is not None and fm.measured <= 2 / RATE
