"""The engine-side ``lab`` target against the real lab, over HTTP only."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from chaosaa.errors import LeaseHeldError, TargetUnreachableError
from chaosaa.spec.faults import Fault
from chaosaa.spec.model import Target as TargetSpec
from chaosaa.targets.base import TargetOptions, target_for
from chaosaa.targets.lab import LabTarget, fault_body
from tests.conftest import require_binary
from tests.lab.fixtures import Lab, call, processes_mentioning

pytestmark = pytest.mark.lab

_FAULT = TypeAdapter(Fault)


def fault(**spec: Any) -> Fault:
    return _FAULT.validate_python({"duration": "30s", **spec})


def target(
    lab_dir: Path | None, regions: tuple[str, ...] = ("us", "eu", "ap"), ephemeral: bool = False
) -> LabTarget:
    spec = TargetSpec.model_validate({"kind": "lab", "regions": {r: {} for r in regions}})
    t = target_for(
        spec,
        TargetOptions(
            run_id="run-1", state_dir=str(lab_dir) if lab_dir else None, ephemeral=ephemeral
        ),
    )
    assert isinstance(t, LabTarget)
    return t


async def _until_true(check: Any, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError("not verified in time")


async def test_open_returns_the_labs_endpoints(clean_lab: Lab) -> None:
    t = target(clean_lab.state_dir)
    try:
        ep = await t.open()
    finally:
        await t.close()
    assert ep.entry_url == clean_lab.router
    assert ep.prometheus_url == clean_lab.prometheus
    assert dict(ep.regions) == {r: clean_lab.node(r) for r in ("us", "eu", "ap")}
    assert "replicationLag" in ep.queries and "successRatio" in ep.queries


async def test_inject_verify_renew_revert_cycle(clean_lab: Lab) -> None:
    t = target(clean_lab.state_dir)
    await t.open()
    try:
        since = time.time()
        f = fault(name="eu-dark", type="blackhole", regions=["eu"])
        applied = await t.inject(f, ttl=4)
        assert applied.ref == "run-1-eu-dark"
        await _until_true(lambda: t.verify_effect(applied), 3)
        await asyncio.sleep(2.5)
        await t.renew(applied, 4)
        await asyncio.sleep(2.5)  # past the first TTL: alive only thanks to the renewal
        assert await t.verify_effect(applied)
        await asyncio.sleep(0.5)
        events = await t.events(since)
        assert any(e.event == "router.failover" and e.detail["home"] == "eu" for e in events)
        await t.revert(applied)
        await t.revert(applied)  # idempotent
        await _until_true(lambda: t.verify_reverted(applied), 3)
    finally:
        await t.close()


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "latency", "regions": ["ap"], "delay": "100ms", "jitter": "10ms"},
        {"type": "replicationLag", "links": [["us", "eu"]], "mode": "pause"},
        {"type": "replicationLag", "regions": ["ap"], "bandwidth": "32kbit"},
        {"type": "regionDown", "regions": ["ap"]},
        {"type": "bandwidth", "links": [["eu", "us"]], "rate": "1mbit"},
        {"type": "packetLoss", "regions": ["us"], "percent": 10},
        {"type": "blackhole", "partition": [["us"], ["eu", "ap"]]},
    ],
)
async def test_every_fault_type_applies_and_reverts(clean_lab: Lab, spec: dict[str, Any]) -> None:
    t = target(clean_lab.state_dir)
    await t.open()
    try:
        applied = await t.inject(fault(name="f", **spec), ttl=10)
        await _until_true(lambda: t.verify_effect(applied), 3)
        await t.revert(applied)
        await _until_true(lambda: t.verify_reverted(applied), 3)
    finally:
        await t.close()


async def test_lease_allows_one_run_at_a_time(clean_lab: Lab) -> None:
    a, b = target(clean_lab.state_dir), target(clean_lab.state_dir)
    await a.open()
    await b.open()
    try:
        await a.acquire_lease("run-a", 5)
        with pytest.raises(LeaseHeldError, match="run-a"):
            await b.acquire_lease("run-b", 5)
        await a.release_lease("run-a")
        await b.acquire_lease("run-b", 5)
        await b.release_lease("run-b")
    finally:
        await a.close()
        await b.close()


async def test_verification_names_what_does_not_hold(clean_lab: Lab) -> None:
    t = target(clean_lab.state_dir)
    await t.open()
    try:
        applied = await t.inject(fault(name="eu-dark", type="blackhole", regions=["eu"]), ttl=20)
        await _until_true(lambda: t.verify_effect(applied), 3)
        assert applied.pending == []
        assert not await t.verify_reverted(applied)
        assert applied.pending == ["fault state active (want reverted)"]
        # The link proxy loses its conditions behind the run's back (as a restarted proxy
        # would): the fault is no longer in effect, and verification says where.
        status, _ = call("DELETE", f"{t.status['proxy']['admin']}/conditions")
        assert status == 200
        assert not await t.verify_effect(applied)
        assert any("(blackhole) in effect on every target" in p for p in applied.pending)
        cut = [p for p in applied.pending if p.startswith("link ") and " cut (probe: " in p]
        assert cut and all("eu" in p for p in cut), applied.pending
    finally:
        await t.rollback()
        await t.close()


async def test_rollback_removes_every_fault(clean_lab: Lab) -> None:
    t = target(clean_lab.state_dir)
    await t.open()
    try:
        await t.inject(fault(name="one", type="blackhole", regions=["eu"]), ttl=20)
        await t.inject(fault(name="two", type="latency", regions=["us"], delay="50ms"), ttl=20)
        removed = await t.rollback()
        assert len(removed) == 2
        assert call("GET", f"{clean_lab.supervisor}/faults")[1]["faults"] == []
    finally:
        await t.close()


async def test_no_lab_and_not_ephemeral_is_unreachable(tmp_path: Path) -> None:
    t = target(tmp_path / "nothing")
    with pytest.raises(TargetUnreachableError, match="no lab is running"):
        await t.open()
    await t.close()


async def test_ephemeral_lab_is_started_and_stopped(tmp_path: Path) -> None:
    require_binary("prometheus", "apt-get install prometheus")
    state = tmp_path / "ephemeral"
    t = target(state, regions=("us", "eu"), ephemeral=True)
    try:
        ep = await t.open()
        assert t.ephemeral and ep.entry_url
        applied = await t.inject(fault(name="down", type="regionDown", regions=["eu"]), ttl=5)
        await _until_true(lambda: t.verify_effect(applied), 3)
        await t.revert(applied)
    finally:
        await t.close()
    assert not (state / "lab.json").exists()
    assert await asyncio.to_thread(processes_mentioning, str(state)) == []


def test_fault_bodies_match_the_lab_api() -> None:
    body = fault_body(fault(name="x", type="blackhole", regions=["eu"]), 10, "id-1")
    assert body == {
        "id": "id-1",
        "name": "x",
        "type": "blackhole",
        "ttl": 10,
        "regions": ["eu"],
        "direction": "both",
        "clients": True,
    }
    body = fault_body(fault(name="x", type="replicationLag", links=[["us", "eu"]]), 10, "i")
    assert body["bandwidth"] == 8000 and body["mode"] == "throttle"


def test_plan_touches_nothing_and_names_each_scope() -> None:
    t = target(None)
    actions = t.plan(fault(name="p", type="blackhole", partition=[["us"], ["eu", "ap"]]))
    assert [a.scope for a in actions] == ["us | eu,ap"]
    actions = t.plan(
        fault(name="l", type="latency", links=[["us", "eu"], ["eu", "ap"]], delay="200ms")
    )
    assert [a.scope for a in actions] == ["link us->eu", "link eu->ap"]
    assert "200ms" in actions[0].action
