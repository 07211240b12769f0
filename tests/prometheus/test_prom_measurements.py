"""Measurements from a real Prometheus scraping gauges the test sets at known instants."""

from __future__ import annotations

import time

import pytest

from chaosaa.measure import aggregate, failover_time_from_series, replication_lag
from chaosaa.model import Series
from chaosaa.prom import PrometheusClient
from tests.prometheus.fixtures import Exporter, wait_until

pytestmark = pytest.mark.prometheus

WAIT = 60.0  # bound on every wait for Prometheus to catch up (loaded 2-core machines)


def wait_scraped_after(client: PrometheusClient, metric: str, instant: float) -> None:
    """Wait until Prometheus holds a sample of ``metric`` scraped after ``instant``."""
    wait_until(
        lambda: client.scalar(f"max(timestamp({metric})) > {instant:.3f}"),
        timeout=WAIT,
        what=f"a scrape of {metric} after {instant:.3f}",
    )


def raw_samples(client: PrometheusClient, metric: str, seconds: int) -> list[tuple[float, float]]:
    series = client.instant(f"{metric}[{seconds}s]")
    assert len(series) == 1
    return series[0].points


def test_failover_time_from_prometheus_is_within_a_step_and_a_scrape_of_the_truth(
    prom_client: PrometheusClient, prom_exporter: Exporter
) -> None:
    metric = "chaosaa_test_success_ratio"
    sustain = 3.0
    step = interval = prom_client.scrape_interval()
    ready = prom_exporter.set(metric, 1.0)
    wait_scraped_after(prom_client, metric, ready + 2 * interval)

    t0 = prom_exporter.set(metric, 0.0)  # the fault takes effect
    time.sleep(3.0)
    t1 = prom_exporter.set(metric, 1.0)  # the service is healthy again
    time.sleep(sustain + 2 * interval)
    end = t1 + sustain + 2 * interval
    wait_scraped_after(prom_client, metric, end)

    [series] = prom_client.range(metric, t0 - 3.0, end, step)
    m = failover_time_from_series(
        series.points, t0, threshold=0.99, sustain=sustain, step=step, scrape_interval=interval
    )
    assert m.degraded and m.recovered, m.details
    assert m.measured is not None and m.recovered_at is not None
    assert m.error_bound_seconds == step + interval
    truth = t1 - t0
    # the set happens a moment after t1 is taken; a scrape already in flight may see it
    assert truth - 0.1 <= m.measured <= truth + m.error_bound_seconds, (m.measured, truth)

    # and exactly: the recovery is the first grid point at or after the first scrape of 1
    first_healthy_scrape = min(
        t
        for t, v in raw_samples(prom_client, metric, int(time.time() - t0) + 5)
        if t > t0 and v == 1
    )
    assert 0.0 <= m.recovered_at - first_healthy_scrape < step + 1e-6


def test_replication_lag_peak_and_recovery_from_prometheus(
    prom_client: PrometheusClient, prom_exporter: Exporter
) -> None:
    metric = "chaosaa_test_replication_lag_seconds"
    interval = step = prom_client.scrape_interval()
    hold = 2.5 * interval  # every value is scraped at least twice

    def lag(target: str, value: float) -> float:
        return prom_exporter.set(metric, value, source="us", target=target)

    lag("eu", 0.2)
    ready = lag("ap", 0.2)
    wait_scraped_after(prom_client, metric, ready + interval)

    fault_start = lag("eu", 3.0)
    lag("ap", 2.0)
    time.sleep(hold)
    lag("eu", 9.0)  # the peak
    time.sleep(hold)
    lag("eu", 5.0)
    lag("ap", 4.5)
    time.sleep(hold)
    fault_end = time.time()  # revert
    lag("eu", 6.0)  # still draining the backlog
    time.sleep(hold)
    back_under = lag("eu", 1.0)
    lag("ap", 0.5)
    time.sleep(hold + interval)
    end = time.time()
    wait_scraped_after(prom_client, metric, back_under + 2 * interval)

    series = prom_client.range(metric, fault_start - 2.0, end, step)
    assert len(series) == 2
    m = replication_lag(
        series,
        fault_start,
        fault_end,
        max_s=4.0,
        recover_within=30.0,
        step=step,
        scrape_interval=interval,
    )
    assert m.measured == 9.0 and not m.no_data
    assert m.details["peakLabels"]["target"] == "eu"
    assert m.peak_at is not None and fault_start <= m.peak_at <= fault_end
    assert m.recovered_after is not None and m.error_bound_seconds == step + interval
    truth = back_under - fault_end
    assert truth - 0.1 <= m.recovered_after <= truth + m.error_bound_seconds
    assert m.details["recoveredInTime"] is True

    strict = replication_lag(
        series,
        fault_start,
        fault_end,
        max_s=4.0,
        recover_within=1.0,
        step=step,
        scrape_interval=interval,
    )
    assert strict.details["recoveredInTime"] is False


def test_a_missing_series_gives_no_data(prom_client: PrometheusClient) -> None:
    end = time.time()
    series = prom_client.range("chaosaa_test_never_exported", end - 30, end, 1.0)
    assert series == []
    assert replication_lag(
        series, end - 20, end - 10, max_s=1.0, step=1.0, scrape_interval=1.0
    ).no_data
    assert failover_time_from_series([], end - 20, step=1.0, scrape_interval=1.0).no_data
    assert aggregate(series, "max").no_data
    assert prom_client.scalar("chaosaa_test_never_exported") is None


def test_nan_from_prometheus_is_no_data_not_a_pass(prom_client: PrometheusClient) -> None:
    end = time.time()
    series = prom_client.range("vector(0) / 0", end - 10, end, 1.0)
    assert all(v != v for _, v in series[0].points)  # NaN
    assert failover_time_from_series(
        series[0].points, end - 10, step=1.0, scrape_interval=1.0
    ).no_data
    assert aggregate(series, "min").no_data
    assert isinstance(series[0], Series)
