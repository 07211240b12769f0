"""Translation of lab fault requests into link-proxy conditions (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from chaosaa.lab.faults import CONDITION_CHECKS, FAULT_TYPES, FaultRequest, parse_rate, plan
from chaosaa.lab.proxy import CONDITION_TYPES

pytestmark = pytest.mark.lab

REGIONS = ["us", "eu", "ap"]


def targets(**req: Any) -> dict[str, str]:
    p = plan(FaultRequest.model_validate(req), REGIONS)
    assert len(p.conditions) == 1
    return {t["link"]: t["dir"] for t in p.conditions[0]["targets"]}


def test_region_blackhole_cuts_every_link_of_the_region_including_clients() -> None:
    assert targets(type="blackhole", regions=["eu"]) == {
        "router>eu": "both",
        "us>eu": "both",
        "ap>eu": "both",
        "eu>us": "both",
        "eu>ap": "both",
    }
    assert "router>eu" not in targets(type="blackhole", regions=["eu"], clients=False)


def test_egress_blackhole_cuts_only_data_leaving_the_region() -> None:
    assert targets(type="blackhole", regions=["eu"], direction="egress") == {
        "router>eu": "down",
        "eu>us": "up",
        "eu>ap": "up",
        "us>eu": "down",
        "ap>eu": "down",
    }


def test_partition_cuts_only_links_between_groups() -> None:
    t = targets(type="blackhole", partition=[["us"], ["eu", "ap"]])
    assert t == {"us>eu": "both", "eu>us": "both", "us>ap": "both", "ap>us": "both"}


def test_latency_on_a_link_delays_data_from_source_to_target() -> None:
    assert targets(type="latency", links=[["us", "eu"]], delay="200ms") == {
        "us>eu": "up",
        "eu>us": "down",
    }


def test_replication_pause_holds_replication_pushes_only() -> None:
    p = plan(
        FaultRequest.model_validate({"type": "replicationLag", "regions": ["ap"], "mode": "pause"}),
        REGIONS,
    )
    cond = p.conditions[0]
    assert cond["type"] == "blackhole" and cond["mode"] == "hang"
    assert {t["link"] for t in cond["targets"]} == {"ap>us", "ap>eu", "us>ap", "eu>ap"}
    assert all(t["dir"] == "up" for t in cond["targets"])


def test_region_down_stops_processes_and_sets_no_condition() -> None:
    p = plan(FaultRequest.model_validate({"type": "regionDown", "regions": ["us"]}), REGIONS)
    assert p.stop_regions == ["us"] and p.conditions == []


def test_rates_use_tc_units() -> None:
    assert parse_rate("64kbit") == 8000
    assert parse_rate("1mbit") == 125_000
    assert parse_rate("100kbps") == 100_000
    assert parse_rate(500) == 500
    with pytest.raises(ValueError):
        parse_rate("fast")


@pytest.mark.parametrize(
    "req",
    [
        {"type": "blackhole", "regions": ["eu"], "partition": [["us"], ["eu"]]},
        {"type": "regionDown", "links": [["us", "eu"]]},
        {"type": "blackhole", "partition": [["us"], ["us", "eu"]]},
        {"type": "blackhole", "partition": [["us"], ["eu"]], "clients": True},
        {"type": "latency", "regions": ["eu"], "delay": "soon"},
        {"type": "blackhole", "regions": ["eu"], "mode": "explode"},
    ],
)
def test_invalid_requests_are_rejected(req: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FaultRequest.model_validate(req)


def test_verification_knows_every_condition_type_the_proxy_implements() -> None:
    assert set(CONDITION_CHECKS) == set(CONDITION_TYPES)


@pytest.mark.parametrize("fault_type", sorted(FAULT_TYPES))
def test_every_fault_type_plans_only_conditions_verification_knows(fault_type: str) -> None:
    requires = FAULT_TYPES[fault_type].requires
    body: dict[str, Any] = {"type": fault_type, "regions": ["eu"]}
    if requires:
        field = requires[0][0]
        body[field] = {"delay": "50ms", "rate": "1mbit", "percent": 5}[field]
    p = plan(FaultRequest.model_validate(body), REGIONS)
    assert p.conditions or p.stop_regions
    assert {c["type"] for c in p.conditions} <= set(CONDITION_CHECKS)
