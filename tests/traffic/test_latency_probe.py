"""Latency from the real probe: a service that turns slow pushes p99 over an objective
during the slow spell, and stays under it before."""

from __future__ import annotations

import asyncio
import time

import pytest

from chaosaa.measure import latency
from chaosaa.traffic import TrafficGenerator
from tests.traffic.service import SwitchableService

pytestmark = pytest.mark.timeout(60)

OBJECTIVE = 0.150  # p99 <= 150 ms
SLOW = 0.200


async def test_a_slow_spell_pushes_p99_over_the_objective_and_only_then() -> None:
    async with SwitchableService("eu") as svc:
        gen = TrafficGenerator(svc.url, rate=250, timeout=2.0, homes=["eu"], run_id="lat")
        await gen.start()
        try:
            await asyncio.sleep(2.0)
            slow_from = time.time()
            svc.delay = SLOW  # the fault: every answer 200 ms late
            await asyncio.sleep(2.0)
            slow_until = time.time()
            svc.delay = 0.0
            await asyncio.sleep(0.5)
        finally:
            await gen.stop(drain_timeout=3.0)
    assert gen.started_at is not None
    before = (gen.started_at + 0.2, slow_from)  # after the first connections opened
    m = latency(gen.samples(), slow_from, slow_until, baseline=before)
    assert not m.no_data, m.details
    assert m.measured is not None and m.measured >= SLOW > OBJECTIVE
    assert m.error_bound_seconds is not None
    assert m.baseline is not None
    p99_before = m.baseline.overall.percentiles[0.99]
    assert p99_before.value is not None and p99_before.value < OBJECTIVE
    assert p99_before.samples >= 400  # enough to bound p99
    assert set(m.window.by_region) == {"eu"}
    assert m.details["change"]["99"]["delta"] > 0.1
