"""replicationLag and canary lag math (DESIGN.md §4)."""

from __future__ import annotations

import math

import pytest

from chaosaa.measure import canary_lag, replication_lag
from chaosaa.model import Series

pytestmark = pytest.mark.unit


def lag_series(target: str, start: float, values: list[float]) -> Series:
    return Series(
        {"source": "us", "target": target},
        [(start + i, v) for i, v in enumerate(values)],
    )


#              t = 100 ...                fault 102..108, max 4
EU = lag_series("eu", 100.0, [0.1, 0.1, 1, 3, 9, 12, 8, 5, 6, 5, 3, 1, 0.5, 0.5])
AP = lag_series("ap", 100.0, [0.1, 0.1, 1, 2, 3, 4, 4, 4, 3, 2, 1, 0.5, 0.2, 0.2])


def test_peak_is_the_largest_value_of_any_series_during_the_fault() -> None:
    m = replication_lag([EU, AP], 102.0, 108.0, max_s=4.0, step=1.0, scrape_interval=1.0)
    assert m.measured == 12.0 and m.unit == "s" and m.source == "prometheus"
    assert m.peak_at == 105.0
    assert m.details["peakLabels"] == {"source": "us", "target": "eu"}
    assert m.error_bound_seconds == 2.0
    assert not m.no_data


def test_recovered_after_is_the_time_from_revert_until_every_series_stays_under_max() -> None:
    m = replication_lag(
        [EU, AP], 102.0, 108.0, max_s=4.0, recover_within=5.0, step=1.0, scrape_interval=1.0
    )
    # eu: 6 at 108, 5 at 109, 3 at 110 -> under from 110 on; ap is under from 108
    assert m.details["recoveredAt"] == 110.0
    assert m.recovered_after == 2.0
    assert m.details["recoveredInTime"] is True


def test_a_dip_under_max_that_does_not_last_is_not_recovery() -> None:
    eu = lag_series("eu", 100.0, [1, 9, 9, 3, 3, 7, 2, 2, 2])
    m = replication_lag([eu], 101.0, 103.0, max_s=4.0, step=1.0, scrape_interval=1.0)
    assert m.recovered_after == 3.0  # 106, not the dip at 103


def test_lag_that_never_recovers_within_the_data_has_no_recovery() -> None:
    eu = lag_series("eu", 100.0, [1, 9, 9, 9, 9])
    m = replication_lag(
        [eu], 101.0, 102.0, max_s=4.0, recover_within=1.0, step=1.0, scrape_interval=1.0
    )
    assert m.recovered_after is None
    assert m.details["recoveredInTime"] is False
    assert m.measured == 9.0


def test_lag_already_under_max_at_revert_recovers_at_once() -> None:
    m = replication_lag([AP], 102.0, 108.0, max_s=4.0, step=1.0, scrape_interval=1.0)
    assert m.recovered_after == 0.0


def test_a_missing_or_nan_point_after_revert_is_not_under_max() -> None:
    eu = Series({}, [(100.0, 9.0), (101.0, 1.0), (103.0, 1.0), (104.0, 1.0)])
    ap = lag_series("ap", 100.0, [5, 1, math.nan, 1, 1])
    m = replication_lag([eu, ap], 100.0, 100.5, max_s=4.0, step=1.0, scrape_interval=1.0)
    assert m.details["recoveredAt"] == 103.0


def test_a_series_that_ended_is_ignored_from_then_on() -> None:
    gone = lag_series("eu", 100.0, [9, 9])  # its exporter went away with its region
    ap = lag_series("ap", 100.0, [1, 1, 1, 1])
    m = replication_lag([gone, ap], 100.0, 100.0, max_s=4.0, step=1.0, scrape_interval=1.0)
    assert m.details["recoveredAt"] == 102.0


def test_peak_includes_one_scrape_and_step_after_revert_but_no_later() -> None:
    eu = lag_series("eu", 100.0, [1, 1, 1, 7, 20])  # 7 at 103, 20 at 104
    m = replication_lag([eu], 100.0, 101.5, max_s=4.0, step=1.0, scrape_interval=1.0)
    assert m.measured == 7.0


@pytest.mark.parametrize(
    "series",
    [
        [],
        [Series({}, [])],
        [lag_series("eu", 100.0, [math.nan] * 5)],
        [lag_series("eu", 50.0, [1])],
    ],
    ids=["no-series", "no-points", "only-nan", "only-before-the-fault"],
)
def test_no_lag_data_during_the_fault_is_no_data(series: list[Series]) -> None:
    m = replication_lag(series, 100.0, 104.0, max_s=4.0, step=1.0, scrape_interval=1.0)
    assert m.no_data and m.measured is None


def test_fault_window_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="before"):
        replication_lag([EU], 108.0, 102.0, max_s=4.0, step=1.0, scrape_interval=1.0)


def test_canary_lag_per_region_and_peak() -> None:
    m = canary_lag(100.0, {"eu": 100.4, "ap": 101.5}, poll_interval=0.1, source_region="us")
    assert m.by_region == {"eu": pytest.approx(0.4), "ap": pytest.approx(1.5)}
    assert m.measured == pytest.approx(1.5)
    assert m.error_bound_seconds == 0.1 and m.source == "canary"
    assert not m.no_data and m.details["lowerBound"] is False


def test_canary_never_seen_is_a_lower_bound_until_polling_gave_up() -> None:
    m = canary_lag(100.0, {"eu": 100.4, "ap": None}, poll_interval=0.1, gave_up_at=130.0)
    assert m.by_region["ap"] is None
    assert m.measured == pytest.approx(30.0)
    assert m.details["notVisible"] == ["ap"] and m.details["lowerBound"] is True
    assert not m.no_data


def test_canary_never_seen_without_a_deadline_is_no_data() -> None:
    assert canary_lag(100.0, {"ap": None}, poll_interval=0.1).no_data
    assert canary_lag(100.0, {}, poll_interval=0.1).no_data
