"""Percentiles of measured samples, with a distribution-free confidence interval.

The ``q``-quantile of ``n`` samples is taken by the nearest-rank method: the
``ceil(q n)``-th smallest. How far it may be from the true quantile of the process that
produced the samples follows from the order statistics alone: the number of samples below
the true quantile is Binomial(n, q), so the ranks ``n q -/+ z sqrt(n q (1 - q))`` (normal
approximation, ``z = 1.96`` for 95 %) bracket it. A bracket rank outside ``1..n`` means
the samples cannot bound the quantile on that side (too few for that percentile).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chaosaa.model import Sample

#: two-sided 95 % normal quantile
Z95 = 1.959963984540054


def quantile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank ``q``-quantile of already sorted values (None: no values)."""
    if not 0 < q < 1:
        raise ValueError(f"quantile must be in (0, 1), not {q!r}")
    if not ordered:
        return None
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@dataclass(frozen=True, slots=True)
class Percentile:
    """One percentile of ``samples`` values and its 95 % confidence interval."""

    q: float
    value: float | None
    samples: int
    low: float | None  # None: too few samples below the percentile to bound it
    high: float | None  # None: too few samples above it (p99 needs about 400)

    @property
    def bounded(self) -> bool:
        """True when the interval is finite on both sides."""
        return self.value is not None and self.low is not None and self.high is not None

    @property
    def error_bound(self) -> float | None:
        """The larger distance from the value to an end of its interval (None: unbounded)."""
        if not self.bounded:
            return None
        assert self.value is not None and self.low is not None and self.high is not None
        return max(self.value - self.low, self.high - self.value)

    def as_dict(self) -> dict[str, object]:
        return {
            "value": self.value,
            "samples": self.samples,
            "low": self.low,
            "high": self.high,
            "errorBound": self.error_bound,
        }


def percentile(ordered: Sequence[float], q: float, z: float = Z95) -> Percentile:
    """The ``q``-quantile of sorted ``ordered`` with its confidence interval."""
    n = len(ordered)
    value = quantile(ordered, q)
    if value is None:
        return Percentile(q, None, 0, None, None)
    spread = z * math.sqrt(n * q * (1 - q))
    lo_rank = math.floor(n * q - spread)
    hi_rank = math.ceil(n * q + spread)
    low = ordered[lo_rank - 1] if lo_rank >= 1 else None
    high = ordered[hi_rank - 1] if hi_rank <= n else None
    return Percentile(q, value, n, low, high)


def send_error_p99(samples: Iterable[Sample], start: float, end: float) -> float:
    """p99 of the send-time error (late only) of requests sent in ``[start, end)``: the
    time resolution of the probe there. 0 when the samples do not carry it."""
    errors = sorted(
        max(0.0, s.send_error)
        for s in samples
        if s.send_error is not None and start <= s.sent_at < end
    )
    return quantile(errors, 0.99) or 0.0
