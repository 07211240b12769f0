"""Range-query step arithmetic of the Prometheus client (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaosaa.prom import MAX_POINTS, effective_step

pytestmark = pytest.mark.unit


def test_step_is_kept_when_the_range_is_small() -> None:
    assert effective_step(1000.0, 1600.0, 1.0) == 1.0
    assert effective_step(1000.0, 1000.0, 0.25) == 0.25


def test_step_is_raised_to_stay_within_eleven_thousand_points() -> None:
    day = 86_400.0
    step = effective_step(0.0, day, 1.0)
    assert step > 1.0
    assert int(day / step) + 1 <= MAX_POINTS


@given(
    start=st.floats(1.6e9, 1.9e9),
    span=st.floats(0, 400 * 86_400),
    step=st.floats(0.001, 3600),
)
def test_any_range_fits_prometheus_limit(start: float, span: float, step: float) -> None:
    chosen = effective_step(start, start + span, step)
    start_ms, end_ms = round(start * 1000), round((start + span) * 1000)
    # Prometheus: (end - start) / step must not exceed 11,000 (integer division)
    assert (end_ms - start_ms) // round(chosen * 1000) <= MAX_POINTS
    assert chosen >= round(step * 1000) / 1000


def test_datetimes_must_be_timezone_aware() -> None:
    aware = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert effective_step(aware, aware + timedelta(hours=1), 1.0) == 1.0
    with pytest.raises(ValueError, match="naive"):
        effective_step(datetime(2026, 11, 26), aware, 1.0)


@pytest.mark.parametrize("step", [0.0, -1.0, float("nan"), float("inf")])
def test_step_must_be_positive_and_finite(step: float) -> None:
    with pytest.raises(ValueError, match="step"):
        effective_step(0.0, 10.0, step)
