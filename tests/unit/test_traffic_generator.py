"""The traffic generator against a real HTTP service on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import math
import socket
import statistics
import time
from collections.abc import AsyncIterator

import pytest

from chaosaa.model import Sample
from chaosaa.spec.traffic import Traffic
from chaosaa.traffic import ERROR_CLASSES, TrafficGenerator, parse_write_value
from chaosaa.traffic.recording import RegionTable, SampleLog
from tests.traffic.service import SwitchableService

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def service() -> AsyncIterator[SwitchableService]:
    async with SwitchableService("eu") as svc:
        yield svc


def generator(url: str | None, **overrides: object) -> TrafficGenerator:
    options: dict[str, object] = {
        "rate": 50,
        "write_ratio": 0.3,
        "timeout": 1.0,
        "keys": 20,
        "homes": ["us", "eu"],
        "run_id": "run1",
        "seed": 7,
    }
    options.update(overrides)
    return TrafficGenerator(url, **options)  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_slow_server_does_not_slow_the_send_rate(service: SwitchableService) -> None:
    # 0.5 s per answer: a closed-loop client with 10 workers would manage 20 req/s.
    service.delay = 0.5
    rate, seconds = 100, 3
    gen = generator(service.url, rate=rate, timeout=2.0)
    await gen.run(seconds)

    assert gen.started_at is not None
    per_second = service.arrivals_per_second(gen.started_at, gen.started_at + seconds)
    assert len(service.arrivals) == rate * seconds
    for count in per_second:
        assert 0.8 * rate <= count <= 1.2 * rate, per_second
    sent = [s.sent_at for s in gen.samples()]
    assert max(sent) - min(sent) == pytest.approx(seconds - 1 / rate, abs=0.15)
    assert all(s.status == 200 or s.status == 404 for s in gen.samples())
    assert statistics.median(s.latency for s in gen.samples()) >= 0.5


async def test_samples_record_status_region_home_latency_and_send_instant(
    service: SwitchableService,
) -> None:
    gen = generator(service.url, rate=50, write_ratio=0.5)
    before = time.time()
    await gen.run(1.0)
    after = time.time()

    samples = gen.samples()
    assert len(samples) == 50
    assert [s.home for s in samples] == ["us", "eu"] * 25  # round-robin, in send order
    assert {s.region for s in samples} == {"eu"}
    assert {s.status for s in samples} <= {200, 404}
    assert all(s.error is None and s.ok for s in samples)
    assert all(0 < s.latency < 1.0 for s in samples)
    assert all(before <= s.sent_at <= after for s in samples)
    assert 10 <= sum(s.write for s in samples) <= 40
    # The server saw each request just after the client says it sent it (same clock).
    arrivals = sorted(a.at for a in service.arrivals)
    gaps = [a - s.sent_at for a, s in zip(arrivals, samples, strict=True)]
    assert min(gaps) > -0.002
    assert statistics.median(gaps) < 0.01
    # The home header went out as recorded.
    assert sorted(a.home or "" for a in service.arrivals) == ["eu"] * 25 + ["us"] * 25


async def test_ledger_holds_only_writes_acknowledged_with_2xx(
    service: SwitchableService,
) -> None:
    gen = generator(service.url, rate=100, write_ratio=0.5, keys=10)
    await gen.start(2.0)
    await asyncio.sleep(1.0)
    service.switch("fail")
    await gen.finished()
    await gen.stop(1.0)

    samples = gen.samples()
    acked = gen.acked_writes()
    acked_sends = {s.sent_at for s in samples if s.write and 200 <= s.status < 300}
    assert {w.sent_at for w in acked} == acked_sends
    assert 20 <= len(acked) < sum(s.write for s in samples)  # the 503s are not in it
    assert any(s.write and s.status == 503 for s in samples)
    values = [w.value for w in acked]
    assert len(set(values)) == len(values)
    for w in acked:
        parsed = parse_write_value(w.value)
        assert parsed is not None and parsed[0] == "run1"
        assert w.key in {f"k{n}" for n in range(10)}
        assert w.region == "eu"
        assert w.sent_at < w.acked_at
    # Keys are overwritten, and what the service holds is an acknowledged value.
    assert len({w.key for w in acked}) < len(acked)
    acked_values = set(values)
    assert service.store and set(service.store.values()) <= acked_values
    assert gen.counters.acked_writes == len(acked)


async def test_overload_is_recorded_as_a_client_side_failure(
    service: SwitchableService,
) -> None:
    service.switch("hang")
    gen = generator(service.url, rate=100, timeout=2.0, max_in_flight=10)
    await gen.start(1.0)
    await gen.finished()
    scheduled = gen.counters.scheduled
    await gen.stop(0.0)

    samples = gen.samples()
    overloads = [s for s in samples if s.error == "overload"]
    assert scheduled == 100
    assert gen.counters.sent == 10
    assert len(overloads) == gen.counters.overloaded == 90
    assert all(s.status == 0 and not s.ok and s.latency == 0 for s in overloads)
    assert gen.counters.cancelled == 10  # the hung ones, dropped by stop(0)


async def test_a_hung_server_gives_timeouts_with_status_zero(
    service: SwitchableService,
) -> None:
    service.switch("hang")
    gen = generator(service.url, rate=20, timeout=0.3)
    await gen.run(1.0)

    samples = gen.samples()
    assert len(samples) == 20
    for s in samples:
        assert (s.status, s.error, s.ok) == (0, "timeout", False)
        assert 0.29 <= s.latency < 0.6
    assert gen.counters.timeouts == gen.counters.errors == 20
    assert gen.counters.by_home["us"].errors == 10
    assert gen.counters.by_region == {}  # nobody served


async def test_stop_is_bounded_while_requests_hang(service: SwitchableService) -> None:
    service.switch("hang")
    gen = generator(service.url, rate=50, timeout=30.0)
    await gen.start()
    await asyncio.sleep(0.5)
    began = time.monotonic()
    await gen.stop(drain_timeout=0.2)
    assert time.monotonic() - began < 1.5
    assert gen.counters.in_flight == 0
    assert gen.counters.cancelled == gen.counters.sent > 0
    assert gen.samples() == []  # cancelled requests are not samples


async def test_connection_refused_is_a_connect_error() -> None:
    gen = generator(f"http://127.0.0.1:{closed_port()}", rate=20, timeout=0.5)
    await gen.run(0.5)
    samples = gen.samples()
    assert len(samples) == 10
    assert {s.error for s in samples} == {"connect"}
    assert all(s.status == 0 for s in samples)
    assert gen.acked_writes() == []


async def test_a_dropped_connection_is_a_reset(service: SwitchableService) -> None:
    service.switch("reset")
    gen = generator(service.url, rate=20, timeout=0.5)
    await gen.run(0.5)
    assert {s.error for s in gen.samples()} == {"reset"}
    assert set(ERROR_CLASSES) >= {"timeout", "connect", "reset", "overload"}


async def test_counters_agree_with_samples_across_a_switch_off(
    service: SwitchableService,
) -> None:
    gen = generator(service.url, rate=100, timeout=0.5)
    await gen.start(1.5)
    await asyncio.sleep(0.5)
    off = service.switch("fail")
    await asyncio.sleep(0.5)
    on = service.switch("up")
    await gen.finished()
    await gen.stop(1.0)

    samples = gen.samples()
    c = gen.counters
    assert c.ok + c.errors == len(samples) == c.scheduled == 150
    assert c.ok == sum(s.ok for s in samples)
    assert sum(r.ok + r.errors for r in c.by_home.values()) == len(samples)
    assert c.by_region["eu"].errors == sum(s.status == 503 for s in samples)
    failed = [s.sent_at for s in samples if not s.ok]
    # every failure was sent while the service was switched off (give it the latency)
    assert failed and all(off - 0.01 <= t <= on for t in failed)


async def test_without_entry_url_each_home_goes_to_its_region() -> None:
    async with SwitchableService("us") as us, SwitchableService("eu") as eu:
        gen = generator(None, region_urls={"us": us.url, "eu": eu.url}, rate=40)
        await gen.run(0.5)
    assert {a.home for a in us.arrivals} == {"us"}
    assert {a.home for a in eu.arrivals} == {"eu"}
    assert {(s.home, s.region) for s in gen.samples()} == {("us", "us"), ("eu", "eu")}


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        generator("http://127.0.0.1:1", rate=0)
    with pytest.raises(ValueError):
        generator(None, region_urls={"us": "http://127.0.0.1:1"})  # no URL for eu


def test_from_spec_defaults_homes_to_every_region() -> None:
    traffic = Traffic(rate=20, write_ratio=0.5, timeout="500ms", keys=7)
    gen = TrafficGenerator.from_spec(
        traffic, "http://127.0.0.1:1", regions=["us", "eu", "ap"], run_id="r"
    )
    assert (gen.rate, gen.write_ratio, gen.timeout, gen.keys) == (20, 0.5, 0.5, 7)
    assert gen.homes == ["us", "eu", "ap"]
    assert gen.max_in_flight >= 20


def test_the_compact_log_gives_back_what_was_recorded() -> None:
    regions = RegionTable(["us"])
    log = SampleLog(regions)
    log.append(2.0, 0.1, 0.001, 200, regions.index("eu"), regions.index("us"), True, None)
    log.append(1.0, 0.0, math.nan, 0, 0, regions.index("us"), False, "overload")
    assert log.samples() == [
        Sample(1.0, 0.0, 0, None, "us", False, "overload"),
        Sample(2.0, 0.1, 200, "eu", "us", True, None, send_error=0.001),
    ]
    assert log.send_errors() == [0.001]
    assert parse_write_value("run-1:a:42") == ("run-1:a", 42)
    assert parse_write_value("someone else's value") is None
