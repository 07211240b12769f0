"""Latency percentiles of the probe, their confidence intervals, and the probe's time
resolution in the failover bound (pure functions over made-up samples)."""

from __future__ import annotations

import math

import pytest

from chaosaa.measure import failover_time_from_samples, latency, percentile
from chaosaa.measure.latency import needed_samples
from chaosaa.model import Sample


def served(t: float, seconds: float, region: str = "us", send_error: float = 0.0) -> Sample:
    return Sample(t, seconds, 200, region, region, False, None, send_error=send_error)


def failed(t: float, home: str = "us") -> Sample:
    return Sample(t, 1.0, 0, None, home, False, "timeout", send_error=0.0)


def test_percentiles_state_their_sample_count_and_a_bracketing_interval() -> None:
    ordered = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1000 ms
    p99 = percentile(ordered, 0.99)
    assert p99.value == pytest.approx(0.990)
    assert p99.samples == 1000
    assert p99.low is not None and p99.high is not None
    assert p99.low < p99.value < p99.high
    assert p99.high - p99.low < 0.015  # ~ +-6 ranks of 1 ms
    assert percentile(ordered, 0.5).value == pytest.approx(0.5)


def test_too_few_samples_leave_p99_unbounded_above() -> None:
    assert needed_samples(0.99) in range(380, 400)
    p99 = percentile([0.001 * i for i in range(100)], 0.99)
    assert p99.value is not None and p99.high is None and p99.error_bound is None
    assert percentile([], 0.99).value is None


def test_latency_overall_and_per_region_during_a_window() -> None:
    samples = [served(i * 0.001, 0.010, "us") for i in range(1000)]
    samples += [served(i * 0.001, 0.200, "ap") for i in range(1000)]
    m = latency(samples, 0.0, 1.0)
    assert not m.no_data
    assert m.window.by_region["us"].percentiles[0.99].value == pytest.approx(0.010)
    assert m.window.by_region["ap"].percentiles[0.5].value == pytest.approx(0.200)
    assert m.window.overall.counted == 2000
    assert m.measured == pytest.approx(0.200)  # p99 over both regions
    only_us = latency(samples, 0.0, 1.0, regions=["us"])
    assert only_us.measured == pytest.approx(0.010)
    assert set(only_us.window.by_region) == {"us"}


def test_during_the_fault_vs_before_it() -> None:
    before = [served(i * 0.001, 0.010) for i in range(1000)]
    during = [served(10 + i * 0.001, 0.050) for i in range(1000)]
    m = latency(before + during, 10.0, 11.0, baseline=(0.0, 1.0))
    assert m.measured == pytest.approx(0.050)
    assert m.baseline is not None
    assert m.baseline.overall.percentiles[0.99].value == pytest.approx(0.010)
    change = m.details["change"]["99"]
    assert change["before"] == pytest.approx(0.010)
    assert change["delta"] == pytest.approx(0.040)
    assert change["ratio"] == pytest.approx(5.0)


def test_error_bound_is_the_interval_plus_the_send_error_p99() -> None:
    samples = [served(i * 0.001, (i % 100) / 1000, send_error=0.002) for i in range(2000)]
    m = latency(samples, 0.0, 2.0)
    p99 = m.window.overall.percentiles[0.99]
    assert p99.error_bound is not None
    assert m.error_bound_seconds == pytest.approx(p99.error_bound + 0.002)
    assert m.details["sendErrorP99"] == pytest.approx(0.002)


def test_failures_are_left_out_or_counted_as_slowest() -> None:
    samples = [served(i * 0.001, 0.010) for i in range(1000)]
    samples += [failed(0.5 + i * 0.001) for i in range(30)]  # 3 % timeouts
    excluded = latency(samples, 0.0, 2.0)
    assert excluded.measured == pytest.approx(0.010)
    assert excluded.window.overall.requests == 1030
    assert excluded.window.overall.counted == 1000
    slowest = latency(samples, 0.0, 2.0, failures="slowest")
    assert slowest.measured == math.inf and not slowest.no_data
    assert "slowest" in slowest.details["reason"]
    assert slowest.details["window"]["overall"]["percentiles"]["99"]["value"] is None  # JSON


def test_no_requests_or_too_few_is_no_data_never_a_pass() -> None:
    assert latency([], 0.0, 1.0).no_data
    few = latency([served(i * 0.01, 0.01) for i in range(50)], 0.0, 1.0)
    assert few.no_data and few.measured is not None
    assert "needs about" in few.details["reason"]
    with pytest.raises(ValueError):
        latency([], 1.0, 0.0)


def test_failover_bound_adds_the_send_error_p99_to_the_gap() -> None:
    # 100 req/s; down from 1.0 s to 1.5 s; every request left 3 ms late.
    samples = [
        Sample(i / 100, 0.001, 503 if 100 <= i < 150 else 200, "us", "us", False, None, 0.003)
        for i in range(700)
    ]
    fm = failover_time_from_samples(samples, 1.0, sustain=2.0, end=7.0)
    assert fm.measured == pytest.approx(0.5, abs=0.011)  # within one gap
    assert fm.details["gap"] == pytest.approx(0.01)
    assert fm.details["sendErrorP99"] == pytest.approx(0.003)
    assert fm.error_bound_seconds == pytest.approx(0.013)
    # samples recorded without send errors keep the gap alone
    bare = [Sample(s.sent_at, s.latency, s.status, "us", "us", False) for s in samples]
    assert failover_time_from_samples(bare, 1.0, sustain=2.0, end=7.0).error_bound_seconds == (
        pytest.approx(0.01)
    )


def test_latency_of_one_home_regions_clients_wherever_they_were_served() -> None:
    # eu's clients were served by us (failed over) and got slower; us's own clients did not
    samples = [Sample(i * 0.001, 0.010, 200, "us", "us", False, None, 0.0) for i in range(1000)]
    samples += [Sample(i * 0.001, 0.080, 200, "us", "eu", False, None, 0.0) for i in range(1000)]
    eu_clients = latency(samples, 0.0, 1.0, homes=["eu"])
    assert eu_clients.measured == pytest.approx(0.080)
    assert eu_clients.window.overall.requests == 1000
    assert eu_clients.details["homes"] == ["eu"]
    assert latency(samples, 0.0, 1.0, homes=["us"]).measured == pytest.approx(0.010)


def test_each_serving_region_is_compared_with_itself_before_the_fault() -> None:
    before = [served(i * 0.001, 0.010, "us") for i in range(1000)]
    during = [served(10 + i * 0.001, 0.030, "us") for i in range(1000)]
    during += [served(10 + i * 0.001, 0.020, "ap") for i in range(1000)]
    m = latency(before + during, 10.0, 11.0, baseline=(0.0, 1.0))
    by_region = m.details["changeByRegion"]
    assert by_region["us"]["99"]["before"] == pytest.approx(0.010)
    assert by_region["us"]["99"]["ratio"] == pytest.approx(3.0)
    assert by_region["ap"]["99"] is None  # ap served nothing before: nothing to compare
