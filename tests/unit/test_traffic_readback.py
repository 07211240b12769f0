"""Read-back, convergence and canary lag against real HTTP services on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from chaosaa.traffic import ReadbackError, canary_lag, read_back, wait_converged
from tests.traffic.service import SwitchableService

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def regions() -> AsyncIterator[dict[str, SwitchableService]]:
    async with (
        SwitchableService("us") as us,
        SwitchableService("eu") as eu,
        SwitchableService("ap") as ap,
    ):
        yield {"us": us, "eu": eu, "ap": ap}


def urls(regions: dict[str, SwitchableService]) -> dict[str, str]:
    return {name: svc.url for name, svc in regions.items()}


async def put(url: str, key: str, value: str) -> None:
    async with aiohttp.ClientSession() as session, session.put(f"{url}/kv/{key}", data=value) as r:
        assert r.status == 200


@pytest.mark.parametrize("metadata_path", [None, "/internal/kv/{key}"])
async def test_read_back_finds_values_and_absent_keys_per_region(
    regions: dict[str, SwitchableService], metadata_path: str | None
) -> None:
    regions["us"].store.update({"k1": "r:1", "k2": "r:2"})
    regions["eu"].store.update({"k1": "r:1"})
    regions["ap"].store.update({"k1": "r:0", "k2": "r:2"})

    values = await read_back(urls(regions), ["k1", "k2", "k3"], metadata_path=metadata_path)

    assert values == {
        "us": {"k1": "r:1", "k2": "r:2", "k3": None},
        "eu": {"k1": "r:1", "k2": None, "k3": None},
        "ap": {"k1": "r:0", "k2": "r:2", "k3": None},
    }


async def test_an_unreadable_region_is_an_error_not_an_absent_key(
    regions: dict[str, SwitchableService],
) -> None:
    regions["us"].store["k1"] = "r:1"
    regions["eu"].switch("fail")

    with pytest.raises(ReadbackError) as caught:
        await read_back(urls(regions), ["k1"], attempts=2, request_timeout=0.5)

    assert caught.value.unreadable == {"eu": ["k1"]}
    assert caught.value.values["us"] == {"k1": "r:1"}
    assert "eu" in str(caught.value)


async def test_read_back_of_a_hung_region_is_bounded(
    regions: dict[str, SwitchableService],
) -> None:
    regions["ap"].switch("hang")
    began = time.monotonic()
    with pytest.raises(ReadbackError):
        await read_back(urls(regions), [f"k{n}" for n in range(20)], request_timeout=0.2)
    assert time.monotonic() - began < 3.0


async def test_wait_converged_returns_once_replication_caught_up(
    regions: dict[str, SwitchableService],
) -> None:
    us, eu, ap = regions["us"], regions["eu"], regions["ap"]
    us.replicate_to(eu, 0.3)
    us.replicate_to(ap, 0.3)
    await put(us.url, "k1", "r:1")

    result = await wait_converged(urls(regions), ["k1", "k2"], timeout=5.0, interval=0.05)

    assert result.converged and result.divergent == []
    assert 0.2 <= result.elapsed < 2.0
    assert {r: v["k1"] for r, v in result.values.items()} == dict.fromkeys(regions, "r:1")


async def test_wait_converged_reports_keys_that_never_converge(
    regions: dict[str, SwitchableService],
) -> None:
    regions["us"].store["k1"] = "r:1"
    regions["eu"].store["k2"] = "r:2"
    for svc in regions.values():
        svc.store["k3"] = "r:3"

    result = await wait_converged(urls(regions), ["k1", "k2", "k3"], timeout=0.5, interval=0.1)

    assert result.divergent == ["k1", "k2"]
    assert result.elapsed < 1.5
    assert result.values["eu"]["k1"] is None


async def test_canary_lag_measures_replication_delay_per_target(
    regions: dict[str, SwitchableService],
) -> None:
    us, eu = regions["us"], regions["eu"]
    us.replicate_to(eu, 0.2)  # ap gets nothing from us

    began = time.monotonic()
    lags = await canary_lag(urls(regions), "us", ["eu", "ap"], timeout=1.0, interval=0.01)

    assert time.monotonic() - began < 2.0
    assert lags["ap"] is None
    assert lags["eu"] is not None and 0.18 <= lags["eu"] < 0.5
    assert not any(k.startswith("chaosaa-canary-") for k in us.store)  # cleaned up


async def test_wait_converged_counts_an_unreadable_region_as_divergent(
    regions: dict[str, SwitchableService],
) -> None:
    for svc in regions.values():
        svc.store["k1"] = "r:1"
    regions["ap"].switch("hang")

    result = await wait_converged(
        urls(regions), ["k1"], timeout=0.3, interval=0.1, request_timeout=0.2
    )

    assert result.divergent == ["k1"]
    assert result.unreadable == {"ap": ["k1"]}
    assert result.elapsed < 2.0
