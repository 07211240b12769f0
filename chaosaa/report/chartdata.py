"""Turn what a run recorded (samples, Prometheus series, fault results) into chart data."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from chaosaa.model import Sample, Series
from chaosaa.report.fmt import format_seconds
from chaosaa.report.model import Chart, ChartMarker, ChartWindow, FaultResult, RunReport, SLOResult


def build_chart(
    report: RunReport,
    *,
    samples: Iterable[Sample] = (),
    lag_series: Iterable[Series] = (),
    success_ratio: dict[str, list[tuple[float, float]]] | None = None,
    replication_lag: dict[str, list[tuple[float, float]]] | None = None,
    bucket_seconds: float = 1.0,
) -> Chart:
    """Everything the timeline chart shows, from the run's raw data and its results.

    Give either the raw ``samples``/``lag_series`` or points computed already
    (``success_ratio`` per region, ``replication_lag`` per link); fault windows and
    failover markers come from the report's faults and failoverTime SLOs, so call this
    after recording them.
    """
    return Chart(
        success_ratio=(
            success_ratio
            if success_ratio is not None
            else success_ratio_points(samples, bucket_seconds=bucket_seconds)
        ),
        replication_lag=(
            replication_lag if replication_lag is not None else series_points(lag_series)
        ),
        fault_windows=fault_windows(report.faults, until=report.finished_at),
        failover_markers=failover_markers(report.slos, report.faults),
        bucket_seconds=bucket_seconds,
    )


def success_ratio_points(
    samples: Iterable[Sample], *, bucket_seconds: float = 1.0
) -> dict[str, list[tuple[float, float]]]:
    """Per region, the share of served requests in each window of ``bucket_seconds``.

    A request counts for the region that served it; a request that failed before any
    region answered counts for the home region it was sent for, so an outage shows up
    as a drop in that region's line instead of vanishing from the chart.
    """
    ok: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    total: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for s in samples:
        region = s.region or s.home or "unknown"
        bucket = math.floor(s.sent_at / bucket_seconds)
        total[region][bucket] += 1
        if s.ok:
            ok[region][bucket] += 1
    return {
        region: [
            (bucket * bucket_seconds, ok[region][bucket] / count)
            for bucket, count in sorted(buckets.items())
        ]
        for region, buckets in sorted(total.items())
    }


def series_points(series: Iterable[Series]) -> dict[str, list[tuple[float, float]]]:
    """Prometheus series keyed by ``source->target`` (or their labels), NaNs dropped."""
    out: dict[str, list[tuple[float, float]]] = {}
    for one in series:
        key = series_key(one.labels)
        points = [(t, v) for t, v in one.points if math.isfinite(v)]
        out.setdefault(key, []).extend(points)
    return {key: sorted(points) for key, points in out.items()}


def series_key(labels: dict[str, str]) -> str:
    if "source" in labels and "target" in labels:
        return f"{labels['source']}->{labels['target']}"
    shown = {k: v for k, v in labels.items() if k not in ("__name__", "instance", "job")}
    return ",".join(f"{k}={v}" for k, v in sorted(shown.items())) or "lag"


def fault_windows(
    faults: Iterable[FaultResult], *, until: float | None = None
) -> list[ChartWindow]:
    """A window per fault that was in place, from effective to reverted.

    A fault never in place has no window; one never reverted is drawn until ``until``.
    """
    windows = []
    for f in faults:
        if f.effective_at is None:
            continue
        end = f.reverted_at if f.reverted_at is not None else until
        windows.append(ChartWindow(name=f.name, type=f.type, start=f.effective_at, end=end))
    return windows


def failover_markers(slos: Iterable[SLOResult], faults: Iterable[FaultResult]) -> list[ChartMarker]:
    """The instant the service was healthy again, per measured failoverTime SLO.

    The SLO's ``details.recoveredAt`` (unix seconds) wins; otherwise the fault it was
    measured from (``details.fault``, default the first fault in place) + the measured time.
    """
    effective = {f.name: f.effective_at for f in faults if f.effective_at is not None}
    first = next(iter(effective.values()), None)
    markers = []
    for slo in slos:
        if slo.type != "failoverTime" or slo.measured is None:
            continue
        recovered = slo.details.get("recoveredAt")
        if not isinstance(recovered, int | float):
            fault = slo.details.get("fault")
            origin = effective.get(fault, first) if isinstance(fault, str) else first
            if origin is None:
                continue
            recovered = origin + slo.measured
        markers.append(
            ChartMarker(
                name=slo.name,
                at=float(recovered),
                label=f"{slo.name}: {format_seconds(slo.measured)}",
            )
        )
    return markers
