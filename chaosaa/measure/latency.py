"""Latency of the traffic probe: p50/p95/p99 over a window, per serving region and overall,
during a fault and before it.

A sample's latency is from its send instant to its answer (or failure), on the monotonic
clock. Which requests count: by default the served ones (``Sample.ok``), so that latency
and error rate are two separate objectives; with ``failures="slowest"`` every failed
request counts as infinitely slow, so that "p99 <= 250 ms" also fails when more than 1 %
of requests failed. A request belongs to the window in which it was *sent*, and to the
region that served it (a failure with no serving region to its home region). ``regions``
keeps the requests of some serving regions, ``homes`` those of some clients' home regions
("eu's clients, wherever they were served").

Every percentile states its sample count and a 95 % confidence interval from order
statistics (``chaosaa.measure.stats``); too few samples to bound the objective's
percentile from above is ``no_data``, never a pass. The error bound of the measured value
adds the generator's send-time error p99 to the interval's half-width: a request that
left late was timed from when it left, but its answer may have been read late by as much.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chaosaa.measure.result import PROBE, Measurement
from chaosaa.measure.stats import Percentile, percentile, send_error_p99
from chaosaa.measure.traffic import region_of
from chaosaa.model import Sample

DEFAULT_QUANTILES = (0.5, 0.95, 0.99)
Failures = Literal["exclude", "slowest"]


@dataclass(frozen=True, kw_only=True)
class LatencyStats:
    """Percentiles of one group of requests (one region, or all) in one window."""

    requests: int  # requests sent in the window (served or not)
    counted: int  # requests the percentiles are taken over
    percentiles: dict[float, Percentile]

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "counted": self.counted,
            "percentiles": {_label(q): _finite(p.as_dict()) for q, p in self.percentiles.items()},
        }


@dataclass(frozen=True, kw_only=True)
class LatencyWindow:
    """Overall and per-region latency in ``[start, end)`` (unix seconds)."""

    start: float
    end: float
    overall: LatencyStats
    by_region: dict[str, LatencyStats] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "overall": self.overall.as_dict(),
            "byRegion": {r: s.as_dict() for r, s in sorted(self.by_region.items())},
        }


@dataclass(frozen=True, kw_only=True)
class Latency(Measurement):
    """The objective's percentile over the window (``measured``, seconds), the window's
    full breakdown and, when asked, the same for the baseline window."""

    quantile: float
    window: LatencyWindow
    baseline: LatencyWindow | None


def latency(
    samples: Iterable[Sample],
    start: float,
    end: float,
    *,
    baseline: tuple[float, float] | None = None,
    objective: float = 0.99,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    regions: Collection[str] | None = None,
    homes: Collection[str] | None = None,
    failures: Failures = "exclude",
) -> Latency:
    """Latency percentiles of requests sent in ``[start, end)``.

    ``objective`` is the objective's quantile (``measured`` = its value over every
    counted request of ``regions``, or of all regions when None, from clients of
    ``homes``, or of every home when None); ``quantiles`` are also reported, per region
    and overall. ``baseline`` (``(start, end)``, e.g. the steady state before the fault)
    gets the same breakdown, and ``details.change`` (overall) and
    ``details.changeByRegion`` compare the two. ``failures``: ``exclude`` (only served
    requests count) or ``slowest`` (a failed request counts as infinitely slow).
    """
    if end < start:
        raise ValueError("end is before start")
    if failures not in ("exclude", "slowest"):
        raise ValueError(f"failures must be exclude or slowest, not {failures!r}")
    qs = sorted({*quantiles, objective})
    samples = list(samples)
    wanted = None if regions is None else set(regions)
    clients = None if homes is None else set(homes)
    window = _window(samples, start, end, qs, wanted, clients, failures)
    before = None
    if baseline is not None:
        before = _window(samples, baseline[0], baseline[1], qs, wanted, clients, failures)

    target = window.overall.percentiles[objective]
    resolution = send_error_p99(samples, start, end)
    details: dict[str, Any] = {
        "quantile": objective,
        "failures": failures,
        "regions": sorted(wanted) if wanted is not None else None,
        "homes": sorted(clients) if clients is not None else None,
        "sendErrorP99": resolution,
        "window": window.as_dict(),
    }
    if before is not None:
        details["baseline"] = before.as_dict()
        details["change"] = _change(window.overall, before.overall)
        details["changeByRegion"] = {
            region: _change(stats, before.by_region.get(region))
            for region, stats in sorted(window.by_region.items())
        }
    measured, bound, no_data = target.value, target.error_bound, False
    if target.value is None:
        no_data, details["reason"] = True, "no requests in the window"
    elif math.isinf(target.value):
        details["reason"] = "failed requests (counted as slowest) reach the percentile"
    elif target.high is None:
        no_data = True
        details["reason"] = (
            f"{target.samples} requests cannot bound p{_label(objective)} from above "
            f"(needs about {needed_samples(objective)})"
        )
    return Latency(
        measured=measured,
        unit="s",
        source=PROBE,
        error_bound_seconds=None if bound is None else bound + resolution,
        details=details,
        no_data=no_data,
        quantile=objective,
        window=window,
        baseline=before,
    )


def needed_samples(q: float, z: float = 1.959963984540054) -> int:
    """Fewest samples whose ``q``-quantile has a finite upper confidence bound."""
    return math.ceil(z * z * q / (1 - q)) + 1


def _window(
    samples: Sequence[Sample],
    start: float,
    end: float,
    qs: Sequence[float],
    wanted: set[str] | None,
    clients: set[str] | None,
    failures: Failures,
) -> LatencyWindow:
    per_region: dict[str, list[float]] = defaultdict(list)
    requests: dict[str, int] = defaultdict(int)
    for s in samples:
        if not start <= s.sent_at < end:
            continue
        if clients is not None and s.home not in clients:
            continue
        region = region_of(s)
        if wanted is not None and region not in wanted:
            continue
        requests[region] += 1
        if s.ok:
            per_region[region].append(s.latency)
        elif failures == "slowest":
            per_region[region].append(math.inf)
    by_region = {
        region: _stats(requests[region], sorted(per_region.get(region, [])), qs)
        for region in requests
    }
    everything = sorted(v for values in per_region.values() for v in values)
    overall = _stats(sum(requests.values()), everything, qs)
    return LatencyWindow(start=start, end=end, overall=overall, by_region=by_region)


def _stats(requests: int, ordered: list[float], qs: Sequence[float]) -> LatencyStats:
    return LatencyStats(
        requests=requests,
        counted=len(ordered),
        percentiles={q: percentile(ordered, q) for q in qs},
    )


def _change(now: LatencyStats, before: LatencyStats | None) -> dict[str, Any]:
    """Per quantile: the value before, and the change (delta, ratio); None where either
    window has no value (e.g. a region that served nothing before the fault)."""
    out: dict[str, Any] = {}
    for q, p in now.percentiles.items():
        b = None if before is None else before.percentiles.get(q)
        if p.value is None or b is None or b.value is None:
            out[_label(q)] = None
            continue
        ratio = p.value / b.value if b.value > 0 and math.isfinite(p.value) else None
        delta = p.value - b.value if math.isfinite(p.value - b.value) else None
        out[_label(q)] = {"before": _finite_or_none(b.value), "delta": delta, "ratio": ratio}
    return out


def _label(q: float) -> str:
    """``0.99`` -> ``99``, ``0.999`` -> ``99.9``."""
    return f"{q * 100:g}"


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _finite(d: dict[str, object]) -> dict[str, object]:
    """JSON has no infinity: an infinite latency (failures counted slowest) becomes None."""
    return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in d.items()}
