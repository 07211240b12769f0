"""failoverTime math: probe samples and Prometheus series (DESIGN.md §4)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaosaa.measure import failover_time_from_samples, failover_time_from_series
from chaosaa.model import Sample

pytestmark = pytest.mark.unit

T_EFFECT = 1000.0


def traffic(
    start: float,
    end: float,
    rate: float,
    failing: list[tuple[float, float]],
    *,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> list[Sample]:
    """Open-loop requests at ``rate``/s; those sent inside a ``failing`` interval fail."""
    rng = rng or random.Random(0)
    out: list[Sample] = []
    t = start
    while t < end:
        bad = any(a <= t < b for a, b in failing)
        out.append(
            Sample(
                sent_at=t,
                latency=1.0 if bad else 0.01,
                status=0 if bad else 200,
                region=None if bad else "us",
                home="eu",
                write=False,
                error="timeout" if bad else None,
            )
        )
        t += (1 / rate) * (1 + jitter * (2 * rng.random() - 1))
    return out


def test_failover_is_measured_from_t_effect_to_the_first_sustained_healthy_window() -> None:
    samples = traffic(990, 1030, 50, [(T_EFFECT, 1004.0)])
    m = failover_time_from_samples(samples, T_EFFECT, end=1030)
    assert m.degraded and m.recovered and not m.no_data
    assert m.unit == "s" and m.source == "probe"
    assert m.measured == pytest.approx(4.0, abs=0.02 + 1e-9)
    assert m.error_bound_seconds == pytest.approx(0.02)
    assert m.recovered_at == pytest.approx(1004.0, abs=0.021)
    assert m.details["failedRequests"] == 200
    assert m.details["firstFailureAt"] == pytest.approx(T_EFFECT, abs=0.02)
    assert m.details["timeToFirstFailure"] == pytest.approx(0.0, abs=0.02)
    assert m.details["degraded"] is True and m.details["recovered"] is True


def test_service_that_never_degraded_has_failover_zero() -> None:
    samples = traffic(990, 1030, 50, [])
    m = failover_time_from_samples(samples, T_EFFECT, end=1030)
    assert m.measured == 0.0
    assert not m.degraded and m.details["degraded"] is False
    assert m.details["failedRequests"] == 0


def test_few_failures_below_the_threshold_are_not_a_degradation() -> None:
    samples = traffic(990, 1030, 200, [])
    next(s for s in samples if s.sent_at >= 1002.0).status = 503  # one failure in 200/s
    m = failover_time_from_samples(samples, T_EFFECT, threshold=0.99, end=1030)
    assert m.details["failedRequests"] == 1
    assert not m.degraded and m.measured == 0.0


def test_service_that_never_recovers_reports_time_until_end() -> None:
    samples = traffic(990, 1030, 50, [(T_EFFECT, 1100.0)])
    m = failover_time_from_samples(samples, T_EFFECT, end=1030)
    assert not m.recovered and m.details["recovered"] is False
    assert m.measured == pytest.approx(30.0)
    assert m.recovered_at is None


def test_recovery_must_stay_healthy_for_sustain() -> None:
    # healthy for 3s in between: shorter than sustain, so it is not the recovery
    samples = traffic(990, 1040, 50, [(T_EFFECT, 1004.0), (1007.0, 1010.0)])
    m = failover_time_from_samples(samples, T_EFFECT, sustain=5.0, end=1040)
    assert m.measured == pytest.approx(10.0, abs=0.021)


def test_a_shorter_sustain_accepts_the_brief_recovery() -> None:
    samples = traffic(990, 1040, 50, [(T_EFFECT, 1004.0), (1007.0, 1010.0)])
    m = failover_time_from_samples(samples, T_EFFECT, sustain=2.0, end=1040)
    assert m.measured == pytest.approx(4.0, abs=0.021)


def test_sustain_that_does_not_fit_before_end_is_no_recovery() -> None:
    samples = traffic(990, 1007, 50, [(T_EFFECT, 1004.0)])
    m = failover_time_from_samples(samples, T_EFFECT, sustain=5.0, end=1007)
    assert not m.recovered
    assert m.measured == pytest.approx(7.0)


def test_a_window_without_requests_is_not_healthy() -> None:
    # the probe stalls for 3s after the outage: no evidence of health there
    samples = [
        s for s in traffic(990, 1030, 50, [(T_EFFECT, 1004.0)]) if not 1005 <= s.sent_at < 1008
    ]
    m = failover_time_from_samples(samples, T_EFFECT, end=1030)
    assert m.measured == pytest.approx(8.0, abs=0.021)


def test_no_requests_after_t_effect_is_no_data() -> None:
    samples = traffic(990, T_EFFECT, 50, [])
    m = failover_time_from_samples(samples, T_EFFECT, end=1030)
    assert m.no_data and m.measured is None


def test_requests_after_end_are_ignored() -> None:
    samples = traffic(990, 1030, 50, [(T_EFFECT, 1100.0)])
    m = failover_time_from_samples(samples, T_EFFECT, end=1020)
    assert m.details["requests"] == pytest.approx(1000, abs=1)
    assert m.measured == pytest.approx(20.0)


def test_sample_order_does_not_matter() -> None:
    samples = traffic(990, 1030, 50, [(T_EFFECT, 1004.0)], jitter=0.5)
    shuffled = samples[:]
    random.Random(1).shuffle(shuffled)
    a = failover_time_from_samples(samples, T_EFFECT, end=1030)
    b = failover_time_from_samples(shuffled, T_EFFECT, end=1030)
    assert a == b


def test_http_4xx_counts_as_served_and_5xx_as_failed() -> None:
    samples = traffic(990, 1030, 50, [])
    for s in samples:
        if T_EFFECT <= s.sent_at < 1003:
            s.status = 503
        elif s.sent_at >= 1003:
            s.status = 404
    m = failover_time_from_samples(samples, T_EFFECT, end=1030)
    assert m.measured == pytest.approx(3.0, abs=0.021)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"sustain": 0.0}, "sustain"),
        ({"window": -1.0}, "window"),
    ],
)
def test_invalid_parameters_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        failover_time_from_samples([], T_EFFECT, end=1030, **kwargs)


# ---------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(5, 150),
    outage=st.floats(0.5, 15),
    offset=st.floats(0, 1),
    jitter=st.floats(0, 0.9),
    seed=st.integers(0, 2**32),
)
def test_failover_from_samples_is_within_one_inter_request_gap_of_the_truth(
    rate: float, outage: float, offset: float, jitter: float, seed: int
) -> None:
    t_effect = T_EFFECT + offset
    recovered = t_effect + outage
    end = recovered + 5.0 + 2.0
    samples = traffic(
        990, end, rate, [(t_effect, recovered)], jitter=jitter, rng=random.Random(seed)
    )
    m = failover_time_from_samples(samples, t_effect, threshold=1.0, end=end)
    assert m.degraded and m.recovered
    assert m.measured is not None and m.error_bound_seconds is not None
    # the recovery instant is the first request at or after the true instant
    assert outage <= m.measured <= outage + m.error_bound_seconds
    assert m.error_bound_seconds <= (1 / rate) * (1 + jitter) + 1e-9


def reference_failover(
    samples: list[Sample], t_effect: float, threshold: float, sustain: float, end: float
) -> float | None:
    """The definition, spelled out naively: first candidate whose sustain windows hold."""
    obs = sorted((s.sent_at, s.ok) for s in samples if s.sent_at < end)
    n_windows = math.ceil(sustain - 1e-9)
    for c, _ in obs:
        if c < t_effect:
            continue
        if c + sustain > end:
            return None
        good = True
        for k in range(n_windows):
            lo, hi = c + k, min(c + k + 1, c + sustain)
            inside = [ok for t, ok in obs if lo <= t < hi]
            if not inside or sum(inside) / len(inside) < threshold:
                good = False
                break
        if good:
            return c
    return None


@settings(max_examples=80, deadline=None)
@given(
    times=st.lists(st.floats(995, 1025, allow_nan=False), min_size=0, max_size=250),
    bad=st.lists(st.booleans(), min_size=250, max_size=250),
    threshold=st.sampled_from([0.5, 0.8, 0.99, 1.0]),
    sustain=st.sampled_from([1.0, 2.5, 5.0]),
)
def test_failover_from_samples_matches_the_definition(
    times: list[float], bad: list[bool], threshold: float, sustain: float
) -> None:
    samples = [
        Sample(sent_at=t, latency=0.0, status=500 if b else 200, region="us", home="us", write=True)
        for t, b in zip(times, bad, strict=False)
    ]
    m = failover_time_from_samples(
        samples, T_EFFECT, threshold=threshold, sustain=sustain, end=1025
    )
    expected = reference_failover(samples, T_EFFECT, threshold, sustain, 1025)
    if not any(T_EFFECT <= t < 1025 for t in times):
        assert m.no_data
    elif expected is None:
        assert not m.recovered and m.measured == pytest.approx(25.0)
    else:
        assert m.recovered_at == expected
        first = min(t for t in times if t >= T_EFFECT)
        assert m.measured == (0.0 if expected == first else expected - T_EFFECT)


# ---------------------------------------------------------------- series


def grid(start: float, values: list[float], step: float = 1.0) -> list[tuple[float, float]]:
    return [(start + i * step, v) for i, v in enumerate(values)]


def test_failover_from_series_is_the_first_point_that_starts_a_sustained_healthy_run() -> None:
    points = grid(995.0, [1.0] * 5 + [0.2] * 8 + [1.0] * 10)  # unhealthy 1000..1007
    m = failover_time_from_series(points, 999.6, sustain=5.0, step=1.0, scrape_interval=1.0)
    assert m.degraded and m.recovered and m.source == "prometheus"
    assert m.recovered_at == 1008.0
    assert m.measured == pytest.approx(8.4)
    assert m.error_bound_seconds == 2.0
    assert m.details["firstUnhealthyAt"] == 1000.0
    assert m.details["minRatio"] == 0.2


def test_nan_points_in_a_series_are_gaps_never_healthy() -> None:
    values = [0.0] * 3 + [1.0, 1.0, math.nan, 1.0, 1.0] + [1.0] * 5
    m = failover_time_from_series(
        grid(1000.0, values), T_EFFECT, sustain=3.0, step=1.0, scrape_interval=1.0
    )
    assert m.recovered_at == 1006.0


def test_missing_grid_points_break_a_healthy_run() -> None:
    points = [(1000.0, 0.0), (1001.0, 1.0), (1002.0, 1.0), (1005.0, 1.0)]
    points += grid(1006.0, [1.0] * 4)
    m = failover_time_from_series(points, T_EFFECT, sustain=3.0, step=1.0, scrape_interval=1.0)
    assert m.recovered_at == 1005.0


def test_series_that_never_degraded_has_failover_zero() -> None:
    m = failover_time_from_series(
        grid(1000.0, [1.0] * 10), T_EFFECT, sustain=5.0, step=1.0, scrape_interval=1.0
    )
    assert m.measured == 0.0 and not m.degraded


def test_series_that_never_recovers_reports_time_until_end() -> None:
    points = grid(1000.0, [0.0] * 10)
    m = failover_time_from_series(points, T_EFFECT, sustain=5.0, step=1.0, scrape_interval=1.0)
    assert not m.recovered and m.measured == 10.0
    m = failover_time_from_series(
        points, T_EFFECT, sustain=5.0, step=1.0, scrape_interval=1.0, end=1008.0
    )
    assert m.measured == 8.0


@pytest.mark.parametrize(
    "points",
    [[], grid(990.0, [1.0] * 5), grid(1000.0, [math.nan] * 5)],
    ids=["empty", "only-before-t_effect", "only-nan"],
)
def test_series_without_data_after_t_effect_is_no_data(points: list[tuple[float, float]]) -> None:
    m = failover_time_from_series(points, T_EFFECT, step=1.0, scrape_interval=1.0)
    assert m.no_data and m.measured is None
