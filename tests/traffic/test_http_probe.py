"""The HTTP probe against a service that knows nothing of chaosaa (no X-Chaosaa headers):
failover time within one inter-request gap of the truth, status and body checks, and the
serving region from a named header or from the endpoint used."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from chaosaa.measure import error_rate, failover_time_from_samples, region_of
from chaosaa.spec.traffic import Traffic
from chaosaa.traffic import TrafficGenerator
from tests.traffic.service import Mode, PlainService

pytestmark = pytest.mark.timeout(60)

RATE = 100.0  # one gap = 10 ms
SUSTAIN = 2.0


def http_traffic(**probe: Any) -> Traffic:
    return Traffic.model_validate(
        {"rate": RATE, "timeout": "1s", "probe": {"type": "http", "path": "/health", **probe}}
    )


def generator(
    traffic: Traffic,
    entry: str | None,
    regions: list[str],
    region_urls: dict[str, str] | None = None,
    workers: int = 0,
) -> TrafficGenerator:
    return TrafficGenerator.from_spec(
        traffic, entry, regions=regions, run_id="http", region_urls=region_urls, workers=workers
    )


@pytest.mark.parametrize(("mode", "workers"), [("fail", 0), ("reset", 0), ("fail", 1)])
async def test_failover_time_of_a_plain_http_service_is_within_one_gap(
    mode: Mode, workers: int
) -> None:
    async with PlainService("eu") as svc:
        gen = generator(http_traffic(), svc.url, ["eu"], workers=workers)
        await gen.start()
        try:
            await asyncio.sleep(1.0)
            off_at = svc.switch(mode)  # t_effect
            await asyncio.sleep(1.2)
            on_at = svc.switch("up")  # healthy again from here
            await asyncio.sleep(SUSTAIN + 1.0)
        finally:
            await gen.stop(drain_timeout=2.0)
        end = on_at + SUSTAIN + 0.9
        samples = gen.samples()
        fm = failover_time_from_samples(samples, off_at, sustain=SUSTAIN, end=end)
    assert all(a.home is None for a in svc.arrivals), "no chaosaa header was sent"
    truth = on_at - off_at
    assert fm.degraded and fm.recovered and not fm.no_data
    assert fm.measured is not None and fm.error_bound_seconds is not None
    # the bound is one gap plus the send-time error p99 the generator measured
    assert fm.error_bound_seconds == pytest.approx(fm.details["gap"] + fm.details["sendErrorP99"])
    assert fm.details["gap"] <= 3 / RATE
    assert abs(fm.measured - truth) <= fm.error_bound_seconds + 0.002, (fm.measured, truth)
    # without a region header or a region endpoint, failures and successes belong to the
    # client's home: the service answered "eu" only by being the one asked
    assert {region_of(s) for s in samples} == {"eu"}


async def test_unexpected_status_and_body_are_failures_with_their_reason() -> None:
    async with PlainService("us", fail_status=404) as svc:
        gen = generator(http_traffic(expectStatus=[200], bodyContains='"ok"'), svc.url, ["us"])
        await gen.start(1.5)
        await asyncio.sleep(0.5)
        svc.switch("fail")  # 404: a correct answer for the kv probe, not for this one
        await asyncio.sleep(0.5)
        svc.switch("up")
        await gen.finished()
        await gen.stop(1.0)
        kinds = Counter(s.error for s in gen.samples())
        assert kinds[None] > 80 and kinds["status"] > 30
        assert all(s.status == 404 for s in gen.samples() if s.error == "status")
        er = error_rate(gen.samples(), 0, time.time() + 1)
        assert er.details["errorsByKind"] == {"status": kinds["status"]}

        wrong_body = generator(http_traffic(bodyMatches=r'"status":\s*"degraded"'), svc.url, [])
        await wrong_body.run(0.3)
    assert {(s.status, s.error, s.ok) for s in wrong_body.samples()} == {(200, "body", False)}


async def test_a_5xx_fails_whatever_the_expected_statuses() -> None:
    async with PlainService("us", fail_status=503) as svc:
        svc.switch("fail")
        gen = generator(http_traffic(expectStatus=[200, 204]), svc.url, ["us"])
        await gen.run(0.3)
    assert {(s.status, s.error, s.ok) for s in gen.samples()} == {(503, None, False)}


async def test_serving_region_from_the_named_header_or_else_the_endpoint_used() -> None:
    async with (
        PlainService("us", region_header="X-Served-By") as router,
        PlainService("us") as us,
        PlainService("eu") as eu,
    ):
        named = generator(http_traffic(regionHeader="x-served-by"), router.url, ["us", "eu"])
        await named.run(0.4)
        direct = generator(
            http_traffic(via="regions", headers={"X-Client-Home": "{home}"}),
            router.url,  # ignored: via regions
            ["us", "eu"],
            region_urls={"us": us.url, "eu": eu.url},
        )
        await direct.run(0.4)
    # the header names the region that served, whatever the client's home
    assert {(s.home, s.region) for s in named.samples()} == {("us", "us"), ("eu", "us")}
    assert {(s.home, s.region) for s in direct.samples()} == {("us", "us"), ("eu", "eu")}
    assert len(us.arrivals) == len(eu.arrivals) == 20
    assert named.counters.by_region["us"].ok == 40


async def test_head_and_post_requests_are_judged_like_any_other() -> None:
    async with PlainService("ap") as svc:
        head = generator(http_traffic(method="HEAD"), svc.url, ["ap"])
        await head.run(0.3)
        post = generator(http_traffic(method="POST", body='{"ping": 1}'), svc.url, ["ap"])
        await post.run(0.3)
    assert {(s.status, s.ok) for s in head.samples() + post.samples()} == {(200, True)}
    assert Counter(a.method for a in svc.arrivals) == {"HEAD": 30, "POST": 30}
    assert head.acked_writes() == post.acked_writes() == []  # only the kv probe writes


def test_via_regions_without_an_endpoint_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"spec\.traffic\.probe\.endpoints.*missing: eu"):
        generator(http_traffic(via="regions"), None, ["us", "eu"], {"us": "http://127.0.0.1:1"})
    with pytest.raises(ValueError, match=r"spec\.traffic\.probe\.url"):
        generator(http_traffic(via="entry"), None, ["us"], {"us": "http://127.0.0.1:1"})
