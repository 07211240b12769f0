"""failoverTime (DESIGN.md §4).

failoverTime runs from t_effect (the fault verified in place) until the start of the first
window in which the service is healthy again and stays healthy for ``sustain``. Healthy
means a success ratio of at least ``threshold`` over windows of ``window`` (1 s). If the
service never degraded, failoverTime is 0 with ``degraded: false``.

Two sources: the traffic probe (each request's send time; error bound one inter-request
gap plus the generator's send-time error p99) and a Prometheus success-ratio range query
(error bound step + scrape interval).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from chaosaa.measure.result import PROBE, PROMETHEUS, FailoverTime
from chaosaa.measure.stats import send_error_p99
from chaosaa.model import Sample

# Grid points further apart than this many steps are a gap in a Prometheus series.
_GAP_STEPS = 1.5


def failover_time_from_samples(
    samples: Sequence[Sample],
    t_effect: float,
    *,
    threshold: float = 0.99,
    sustain: float = 5.0,
    window: float = 1.0,
    end: float,
) -> FailoverTime:
    """failoverTime from the traffic probe's requests.

    Candidate recovery instants are the send times of requests at or after ``t_effect``;
    the recovery instant is the first candidate ``c`` for which each consecutive window
    ``[c, c + window)``, ``[c + window, c + 2 window)``, ... up to ``c + sustain`` holds at
    least one request and a success ratio ``>= threshold``. A request counts at its send
    time. Only requests sent before ``end`` count, and the sustain period must fit before
    ``end``; with no recovery by then, measured is ``end - t_effect`` and
    ``recovered`` false.

    The error bound is the largest inter-request gap next to the recovery instant (the
    true instant lies between the candidates on either side of it) plus the 99th
    percentile of the send-time error the generator measured on the requests considered
    (``Sample.send_error``): a send instant is read just before the request leaves, and a
    process descheduled in between sends it later than recorded, by about as much as it
    sends late. At 1,000 req/s the gap is 1 ms and the send error p99 ~0.1 ms idle, a
    few ms on a loaded machine; this keeps the bound honest at every rate.
    """
    _check(threshold, sustain, window)
    obs = sorted((s.sent_at, s.ok) for s in samples if s.sent_at < end)
    times = [t for t, _ in obs]
    failed_before = [0]  # failed_before[i] = failures among obs[:i]
    for _, ok in obs:
        failed_before.append(failed_before[-1] + (not ok))
    first = bisect_left(times, t_effect)
    params = {"threshold": threshold, "sustain": sustain, "window": window}
    if first == len(times):
        return _no_data(PROBE, None, {**params, "requests": 0}, "no requests sent after t_effect")

    after = obs[first:]
    failures = [t for t, ok in after if not ok]
    requests = len(after)
    span = times[-1] - times[first]
    mean_gap = span / (requests - 1) if requests > 1 else window
    send_error = send_error_p99(samples, t_effect, end)
    details = {
        **params,
        "sendErrorP99": send_error,
        "requests": requests,
        "failedRequests": len(failures),
        "firstFailureAt": failures[0] if failures else None,
        "timeToFirstFailure": failures[0] - t_effect if failures else None,
        "lastFailureAt": failures[-1] if failures else None,
        "ratePerSecond": (requests - 1) / span if span > 0 else None,
    }

    n_windows = max(1, math.ceil(sustain / window - 1e-9))

    def healthy(a: float, b: float) -> bool:
        i, j = bisect_left(times, a), bisect_left(times, b)
        return j > i and (j - i - (failed_before[j] - failed_before[i])) / (j - i) >= threshold

    def sustained(c: float) -> bool:
        return all(
            healthy(c + k * window, min(c + (k + 1) * window, c + sustain))
            for k in range(n_windows)
        )

    recovery: int | None = None
    for i in range(first, len(times)):
        c = times[i]
        if c + sustain > end:
            break
        if i > first and c == times[i - 1]:
            continue
        if sustained(c):
            recovery = i
            break

    if recovery is None:
        return _measured(PROBE, mean_gap + send_error, details, t_effect, None, stop=end)
    gap = _gap_around(times, recovery, fallback=mean_gap)
    details["gap"] = gap
    return _measured(
        PROBE, gap + send_error, details, t_effect, times[recovery], degraded=recovery != first
    )


def failover_time_from_series(
    points: Sequence[tuple[float, float]],
    t_effect: float,
    *,
    threshold: float = 0.99,
    sustain: float = 5.0,
    step: float,
    scrape_interval: float,
    end: float | None = None,
) -> FailoverTime:
    """failoverTime from a success-ratio series (a Prometheus range query, one series).

    Each point stands for the window ``[t, t + step)``. The recovery instant is the first
    point at or after ``t_effect`` that starts ``ceil(sustain / step)`` consecutive grid
    points, all present and ``>= threshold``. NaN points and missing grid points are
    gaps, never healthy. Without recovery, measured is ``end - t_effect`` (``end``
    defaults to the last point + step) and ``recovered`` false. The error bound is
    ``step + scrape_interval``.
    """
    _check(threshold, sustain, step)
    pts = sorted((t, v) for t, v in points if t >= t_effect and (end is None or t < end))
    bound = step + scrape_interval
    params = {"threshold": threshold, "sustain": sustain, "step": step}
    if not any(math.isfinite(v) for _, v in pts):
        return _no_data(PROMETHEUS, bound, {**params, "points": len(pts)}, "no data after t_effect")
    needed = max(1, math.ceil(sustain / step - 1e-9))
    # run[i]: healthy grid points in a row starting at point i
    run = [0] * (len(pts) + 1)
    for i in range(len(pts) - 1, -1, -1):
        t, v = pts[i]
        if not v >= threshold:  # NaN compares False: never healthy
            continue
        contiguous = i + 1 < len(pts) and pts[i + 1][0] - t <= _GAP_STEPS * step
        run[i] = 1 + (run[i + 1] if contiguous else 0)
    recovery = next((i for i in range(len(pts)) if run[i] >= needed), None)

    unhealthy = [t for t, v in pts if not v >= threshold]
    finite = [v for _, v in pts if math.isfinite(v)]
    details = {
        **params,
        "scrapeInterval": scrape_interval,
        "points": len(pts),
        "firstUnhealthyAt": unhealthy[0] if unhealthy else None,
        "minRatio": min(finite),
    }
    if recovery is None:
        stop = end if end is not None else pts[-1][0] + step
        return _measured(PROMETHEUS, bound, details, t_effect, None, stop=stop)
    return _measured(PROMETHEUS, bound, details, t_effect, pts[recovery][0], degraded=recovery != 0)


def _no_data(
    source: str, bound: float | None, details: dict[str, Any], reason: str
) -> FailoverTime:
    return FailoverTime(
        measured=None,
        unit="s",
        source=source,
        error_bound_seconds=bound,
        details={**details, "reason": reason},
        no_data=True,
        degraded=False,
        recovered=False,
        recovered_at=None,
    )


def _measured(
    source: str,
    bound: float,
    details: dict[str, Any],
    t_effect: float,
    recovered_at: float | None,
    *,
    degraded: bool = True,
    stop: float = math.nan,
) -> FailoverTime:
    """Recovered at ``recovered_at`` (0 if never degraded), or not by ``stop``."""
    recovered = recovered_at is not None
    if recovered_at is None:
        measured = stop - t_effect
    else:
        measured = recovered_at - t_effect if degraded else 0.0
    return FailoverTime(
        measured=measured,
        unit="s",
        source=source,
        error_bound_seconds=bound,
        details={
            **details,
            "degraded": degraded,
            "recovered": recovered,
            "recoveredAt": recovered_at,
        },
        degraded=degraded,
        recovered=recovered,
        recovered_at=recovered_at,
    )


def _check(threshold: float, sustain: float, window: float) -> None:
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], not {threshold!r}")
    if not sustain > 0:
        raise ValueError(f"sustain must be > 0, not {sustain!r}")
    if not window > 0:
        raise ValueError(f"window/step must be > 0, not {window!r}")


def _gap_around(times: list[float], i: int, *, fallback: float) -> float:
    """The larger of the gaps to the neighbouring distinct send times of ``times[i]``."""
    t = times[i]
    j = bisect_left(times, t)
    before = t - times[j - 1] if j > 0 else 0.0
    k = i
    while k < len(times) and times[k] == t:
        k += 1
    after = times[k] - t if k < len(times) else 0.0
    gap = max(before, after)
    return gap if gap > 0 else fallback
