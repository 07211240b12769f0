"""Global router: failover after N misses, fail-back with hysteresis, the event log.

In-process against fake regions whose health we flip, with a fast policy; then once
end-to-end in the lab with a real regionDown."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chaosaa.lab.router import HealthPolicy, Router
from tests.lab.fixtures import Lab, request, wait_until

pytestmark = [pytest.mark.lab, pytest.mark.timeout(60)]

FAST = HealthPolicy(
    interval=0.05,
    timeout=0.2,
    fail_after=3,
    recover_after=3,
    hold_down=0.5,
    max_hold_down=4.0,
    flap_window=10.0,
    upstream_timeout=0.5,
)


@dataclass
class FakeRegion:
    name: str
    healthy: bool = True
    url: str = ""


@dataclass
class Rig:
    router: Router
    url: str
    regions: dict[str, FakeRegion]
    log: Path

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.router.events.events if kind is None or e["event"] == kind]


async def _fake(region: FakeRegion) -> web.AppRunner:
    async def health(_r: web.Request) -> web.Response:
        return web.Response(status=200 if region.healthy else 503)

    async def kv(_r: web.Request) -> web.Response:
        return web.Response(text=region.name, headers={"X-Chaosaa-Region": region.name})

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_route("*", "/kv/{k}", kv)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    region.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return runner


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    regions = {n: FakeRegion(n) for n in ("us", "eu", "ap")}
    runners = [await _fake(r) for r in regions.values()]
    log = tmp_path / "events.jsonl"
    router = Router({n: r.url for n, r in regions.items()}, FAST, log)
    await router.start()
    runner = web.AppRunner(router.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Rig(router, f"http://127.0.0.1:{runner.addresses[0][1]}", regions, log)
    finally:
        await runner.cleanup()
        await router.close()
        for r in runners:
            await r.cleanup()


async def _until(predicate: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


async def _served_by(rig: Rig, home: str) -> tuple[str, str]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{rig.url}/kv/x", headers={"X-Chaosaa-Home": home}) as r,
    ):
        return r.headers["X-Chaosaa-Region"], r.headers["X-Chaosaa-Failover"]


async def test_fails_over_after_n_misses_and_logs_exact_times(rig: Rig) -> None:
    assert await _served_by(rig, "eu") == ("eu", "false")
    t0 = time.monotonic()
    rig.regions["eu"].healthy = False
    await _until(lambda: rig.events("failover"), 3)
    down = rig.events("region_down")[0]
    failover = rig.events("failover")[0]
    assert down["region"] == "eu" and down["misses"] == FAST.fail_after
    assert t0 <= down["firstMissMono"] <= down["mono"] <= failover["mono"]
    # N misses at the check interval: not before (N-1) intervals, not much later.
    detect = down["mono"] - t0
    assert (FAST.fail_after - 1) * FAST.interval <= detect < FAST.fail_after * FAST.interval + 0.5
    assert (failover["home"], failover["from"], failover["to"]) == ("eu", "eu", "ap")
    assert await _served_by(rig, "eu") == ("ap", "true")
    assert await _served_by(rig, "us") == ("us", "false")
    await asyncio.sleep(0.05)  # the log is written from its own thread
    lines = [json.loads(x) for x in rig.log.read_text().splitlines()]
    logged = next(e for e in lines if e["event"] == "failover")
    assert logged["ts"].endswith("Z") and logged["mono"] == failover["mono"]


async def test_flapping_region_does_not_bounce_traffic(rig: Rig) -> None:
    eu = rig.regions["eu"]
    eu.healthy = False
    await _until(lambda: rig.events("failover"), 3)
    # Flap: 0.3 s up / 0.3 s down for 3 s. Each up phase has enough successes
    # (recover_after=3 at 50 ms) but never hold_down (0.5 s) without a miss.
    for _ in range(5):
        eu.healthy = True
        await asyncio.sleep(0.3)
        eu.healthy = False
        await asyncio.sleep(0.3)
    assert rig.events("failback") == [], "traffic went back to a flapping region"
    assert len(rig.events("failover")) == 1
    stable_from = time.monotonic()
    eu.healthy = True
    await _until(lambda: rig.events("failback"), 3)
    back = rig.events("failback")[0]
    # The last miss came at most one check interval before the region became stable.
    assert back["mono"] - stable_from >= FAST.hold_down - FAST.interval
    assert await _served_by(rig, "eu") == ("eu", "false")
    # Going down again soon after coming back doubles the hold-down (flap damping).
    eu.healthy = False
    await _until(lambda: len(rig.events("region_down")) == 2, 3)
    assert rig.events("region_down")[1]["holdDownSeconds"] == 2 * FAST.hold_down


async def test_all_regions_down_answers_503(rig: Rig) -> None:
    for region in rig.regions.values():
        region.healthy = False
    await _until(lambda: rig.events("no_region"), 3)
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{rig.url}/kv/x", headers={"X-Chaosaa-Home": "us"}) as r,
    ):
        assert r.status == 503


async def test_unknown_home_is_rejected(rig: Rig) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{rig.url}/kv/x", headers={"X-Chaosaa-Home": "mars"}) as r,
    ):
        assert r.status == 400


def test_region_down_in_the_lab_fails_over_and_back(clean_lab: Lab) -> None:
    lab = clean_lab
    since = time.monotonic()
    fault = lab.inject(type="regionDown", regions=["eu"], ttl=30)
    assert lab.live_status()["regions"]["eu"]["stopped"] is True
    # While undetected, requests homed in eu fail fast (upstream timeout), never hang.
    started = time.monotonic()
    status, _, _ = request("GET", f"{lab.router}/kv/none", headers={"X-Chaosaa-Home": "eu"})
    assert time.monotonic() - started < 2.0
    assert status in (404, 502, 503, 504)

    def served() -> str:
        _, _, h = request("GET", f"{lab.router}/kv/none", headers={"X-Chaosaa-Home": "eu"})
        return h["X-Chaosaa-Region"]

    wait_until(lambda: served() == "ap", 5, what="failover to ap")
    status, body = request("GET", f"{lab.router}/router/events?sinceMono={since}")[:2]
    events = json.loads(body)["events"]
    kinds = [e["event"] for e in events]
    assert "region_down" in kinds and "failover" in kinds
    lab.revert(fault["id"])
    wait_until(lambda: served() == "eu", 10, what="failback to eu")
    _, body = request("GET", f"{lab.router}/router/events?sinceMono={since}")[:2]
    events = json.loads(body)["events"]
    failbacks = [e for e in events if e["event"] == "failback" and e["home"] == "eu"]
    assert len(failbacks) == 1
    lines = [
        json.loads(x) for x in Path(lab.status["routerEvents"]["path"]).read_text().splitlines()
    ]
    assert failbacks[0] in lines
