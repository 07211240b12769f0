"""Aggregation for the generic ``promql`` SLO: one number out of a range query."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from chaosaa.measure.result import PROMETHEUS, Measurement
from chaosaa.model import Series

Aggregate = Literal["max", "min", "avg", "last"]


def aggregate(
    series: Sequence[Series],
    how: Aggregate,
    *,
    start: float | None = None,
    end: float | None = None,
    unit: str = "",
    error_bound_seconds: float | None = None,
) -> Measurement:
    """``max``/``min``/``avg`` over every point of every series in ``[start, end]``, or
    ``last``: the value at the latest instant (the largest, if several series have a point
    then). NaN points are skipped; infinities are real values and kept. No point left is
    ``no_data``. ``details.at`` is the instant of the max/min/last value."""
    points = [
        (t, v, s.labels)
        for s in series
        for t, v in s.points
        if not math.isnan(v) and (start is None or t >= start) and (end is None or t <= end)
    ]
    details: dict[str, object] = {
        "aggregate": how,
        "series": len(series),
        "points": len(points),
    }
    if not points:
        return Measurement(
            measured=None,
            unit=unit,
            source=PROMETHEUS,
            error_bound_seconds=error_bound_seconds,
            details={**details, "reason": "no data"},
            no_data=True,
        )
    if how == "avg":
        values = [v for _, v, _ in points]
        # fsum is exact for finite values but raises on inf - inf, where sum gives NaN
        total = math.fsum(values) if all(map(math.isfinite, values)) else sum(values)
        measured = total / len(values)
        return Measurement(
            measured=measured,
            unit=unit,
            source=PROMETHEUS,
            error_bound_seconds=error_bound_seconds,
            details=details,
            no_data=math.isnan(measured),
        )
    if how == "max":
        t, v, labels = max(points, key=lambda p: p[1])
    elif how == "min":
        t, v, labels = min(points, key=lambda p: p[1])
    elif how == "last":
        t, v, labels = max(points, key=lambda p: (p[0], p[1]))
    else:
        raise ValueError(f"unknown aggregate {how!r}: use max, min, avg or last")
    return Measurement(
        measured=v,
        unit=unit,
        source=PROMETHEUS,
        error_bound_seconds=error_bound_seconds,
        details={**details, "at": t, "labels": dict(labels)},
    )
