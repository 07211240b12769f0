"""Error rate, success ratio per region, and the promql SLO's aggregate."""

from __future__ import annotations

import math

import pytest

from chaosaa.measure import aggregate, error_rate, success_ratio, success_ratio_by_region
from chaosaa.model import Sample, Series

pytestmark = pytest.mark.unit


def req(t: float, status: int, region: str | None, home: str | None = "eu") -> Sample:
    return Sample(
        sent_at=t,
        latency=0.01,
        status=status,
        region=region,
        home=home,
        write=False,
        error="timeout" if status == 0 else None,
    )


SAMPLES = [
    req(10.1, 200, "us"),
    req(10.5, 0, None),  # timeout, no serving region: belongs to home eu
    req(10.7, 503, "eu"),
    req(11.2, 200, "us"),
    req(11.4, 404, "eu"),  # a correct answer
    req(12.0, 0, None, home=None),
]


def test_error_rate_counts_failed_requests_in_the_interval() -> None:
    m = error_rate(SAMPLES, 10.0, 12.0)
    assert m.measured == pytest.approx(2 / 5)
    assert m.unit == "ratio" and m.source == "probe" and not m.no_data
    assert m.details["requests"] == 5 and m.details["errors"] == 2
    assert m.details["byRegion"] == {
        "eu": {"requests": 3, "errors": 2, "errorRate": pytest.approx(2 / 3)},
        "us": {"requests": 2, "errors": 0, "errorRate": 0.0},
    }
    assert m.details["errorsByKind"] == {"http5xx": 1, "timeout": 1}


def test_error_rate_without_requests_is_no_data() -> None:
    m = error_rate(SAMPLES, 50.0, 60.0)
    assert m.no_data and m.measured is None


def test_success_ratio_by_region_attributes_failures_without_a_server_to_home() -> None:
    series = success_ratio_by_region(SAMPLES, window=1.0)
    assert series == {
        "eu": [(10.0, 0.0), (11.0, 1.0)],
        "unknown": [(12.0, 0.0)],
        "us": [(10.0, 1.0), (11.0, 1.0)],
    }


def test_success_ratio_over_all_traffic_leaves_empty_windows_out() -> None:
    assert success_ratio([*SAMPLES, req(20.5, 200, "us")], window=2.0) == [
        (10.0, pytest.approx(3 / 5)),
        (12.0, 0.0),
        (20.0, 1.0),
    ]


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        success_ratio(SAMPLES, window=0)


SERIES = [
    Series({"region": "us"}, [(1.0, 0.5), (2.0, math.nan), (3.0, 0.9)]),
    Series({"region": "eu"}, [(1.0, 0.7), (2.0, 0.1), (3.0, 0.95)]),
]


@pytest.mark.parametrize(
    ("how", "expected", "at"),
    [("max", 0.95, 3.0), ("min", 0.1, 2.0), ("last", 0.95, 3.0), ("avg", 3.15 / 5, None)],
)
def test_aggregate_skips_nan(how: str, expected: float, at: float | None) -> None:
    m = aggregate(SERIES, how, unit="ratio", error_bound_seconds=2.0)  # type: ignore[arg-type]
    assert m.measured == pytest.approx(expected)
    assert m.details.get("at") == at
    assert m.details["points"] == 5
    assert m.error_bound_seconds == 2.0 and m.source == "prometheus"


def test_aggregate_within_a_time_range() -> None:
    assert aggregate(SERIES, "max", start=1.0, end=2.0).measured == 0.7


def test_aggregate_keeps_infinities() -> None:
    m = aggregate([Series({}, [(1.0, math.inf), (2.0, 1.0)])], "max")
    assert m.measured == math.inf


@pytest.mark.parametrize(
    "series", [[], [Series({}, [(1.0, math.nan)])]], ids=["no-series", "only-nan"]
)
def test_aggregate_without_data_is_no_data(series: list[Series]) -> None:
    m = aggregate(series, "avg")
    assert m.no_data and m.measured is None
