"""SLO evaluators: turn measurements into verdicts.

No data, NaN or a failed query is never a pass: the verdict is ``unknown``, which fails the
run unless the SLO says ``onNoData: ignore``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chaosaa.engine.canaries import DatastoreCanaries
from chaosaa.engine.faults import FaultRecord
from chaosaa.engine.verdict import combine_sources, slo_result
from chaosaa.errors import ChaosaaError
from chaosaa.measure import failover as m_failover
from chaosaa.measure import lag as m_lag
from chaosaa.measure import traffic as m_traffic
from chaosaa.measure.aggregate import Aggregate, aggregate
from chaosaa.measure.latency import latency as measure_latency
from chaosaa.measure.latency import needed_samples
from chaosaa.measure.result import Measurement, ReplicationLag
from chaosaa.measure.stats import Percentile
from chaosaa.model import AckedWrite, Sample, Series
from chaosaa.prom.client import PrometheusClient
from chaosaa.report.model import SLOResult
from chaosaa.spec.checks import canary_applies
from chaosaa.spec.model import (
    SLO,
    ErrorRateSLO,
    FailoverTimeSLO,
    GameDaySpec,
    LatencySLO,
    LostWritesSLO,
    PromQLSLO,
    ReplicationLagSLO,
)
from chaosaa.targets.base import Endpoints

log = logging.getLogger(__name__)


@dataclass
class SLOContext:
    spec: GameDaySpec
    prom: PrometheusClient | None
    endpoints: Endpoints
    faults: Sequence[FaultRecord]
    samples: Sequence[Sample]
    acked: Sequence[AckedWrite]
    lost_writes: int
    divergent_keys: int
    end: float
    rate: float
    canary: dict[str, float | None] | None = None
    lost_details: dict[str, Any] = field(default_factory=dict)
    start: float = 0.0
    datastores: DatastoreCanaries | None = None


def _unknown(slo: SLO, source: str, why: str, **details: Any) -> SLOResult:
    """No data, NaN or a failed query: never a pass."""
    return slo_result(slo, None, source=source, details={"reason": why, **details})


@dataclass(frozen=True)
class Window:
    """Where a windowed SLO looks: requests sent in ``[start, end)`` (unix seconds)."""

    start: float
    end: float
    #: the window before the faults, to compare with (None: window run, or nothing before)
    baseline: tuple[float, float] | None
    details: dict[str, Any]


def slo_window(slo: ErrorRateSLO | LatencySLO, ctx: SLOContext) -> Window | str:
    """The SLO's window, or why there is none. ``run``: from the start of injection to the
    end. ``faults``: from the (named, else first) fault in place plus ``settle`` to the
    last revert; the baseline is the second half of the warm-up up to the first request
    to inject (the steady state the faults disturbed)."""
    if slo.window == "run":
        return Window(ctx.start, ctx.end, None, {"windowType": "run"})
    records = [r for r in ctx.faults if slo.fault in (None, r.fault.name)]
    effective = [r.effective_at for r in records if r.effective_at is not None]
    if not effective:
        return "the fault never took effect"
    start = min(effective) + slo.settle
    end = max((r.reverted_at or ctx.end) for r in records if r.effective_at is not None)
    if end <= start:
        return "nothing is left of the fault window after settle"
    requested = [r.requested_at for r in ctx.faults if r.requested_at is not None]
    first = min(requested, default=min(effective))
    before = (ctx.start - ctx.spec.traffic.warmup / 2, first)
    details = {
        "windowType": "faults",
        "fault": slo.fault or ", ".join(r.fault.name for r in records),
        "settleSeconds": slo.settle,
    }
    return Window(start, end, before if before[1] > before[0] else None, details)


def _fault_for(slo: FailoverTimeSLO, faults: Sequence[FaultRecord]) -> FaultRecord | None:
    for rec in faults:
        if slo.fault is None or rec.fault.name == slo.fault:
            return rec
    return None


async def _range(ctx: SLOContext, expr: str, start: float, end: float, step: float) -> list[Series]:
    assert ctx.prom is not None
    result: list[Series] = await asyncio.to_thread(ctx.prom.range, expr, start, end, step)
    return result


async def _scrape_interval(ctx: SLOContext) -> float:
    if ctx.spec.prometheus.scrape_interval:
        return ctx.spec.prometheus.scrape_interval
    assert ctx.prom is not None
    interval: float = await asyncio.to_thread(ctx.prom.scrape_interval)
    return interval


async def failover_time(slo: FailoverTimeSLO, ctx: SLOContext) -> SLOResult:
    """From the probe's requests, from Prometheus, or from both side by side."""
    sources = ("probe", "prometheus") if slo.source == "both" else (slo.source,)
    return combine_sources(slo, [await _failover_from(s, slo, ctx) for s in sources])


async def _failover_from(source: str, slo: FailoverTimeSLO, ctx: SLOContext) -> SLOResult:
    rec = _fault_for(slo, ctx.faults)
    if rec is None or rec.effective_at is None:
        return _unknown(slo, source, "the fault never took effect")
    t_effect = rec.effective_at
    if source == "probe":
        fm = m_failover.failover_time_from_samples(
            list(ctx.samples), t_effect, threshold=slo.threshold, sustain=slo.sustain, end=ctx.end
        )
    else:
        expr = slo.promql or ctx.endpoints.queries.get("successRatio")
        if not expr or ctx.prom is None:
            return _unknown(slo, "prometheus", "no success-ratio query")
        interval = await _scrape_interval(ctx)
        series = await _range(ctx, expr, t_effect - interval, ctx.end, interval)
        fm = m_failover.failover_time_from_series(
            series[0].points if series else [],
            t_effect,
            threshold=slo.threshold,
            sustain=slo.sustain,
            step=interval,
            scrape_interval=interval,
            end=ctx.end,
        )
    if fm.no_data or fm.measured is None:
        return _unknown(slo, fm.source, "no data after the fault took effect")
    bound = fm.error_bound_seconds
    if source == "prometheus" and bound is not None and not slo.promql:
        # the target's own query lags what it measures (see Endpoints.query_delay_seconds)
        bound += ctx.endpoints.query_delay_seconds
    details = {
        **fm.details,
        "fault": rec.fault.name,
        "effectiveAt": t_effect,
        "degraded": fm.degraded,
        "recovered": fm.recovered,
        "recoveredAt": fm.recovered_at,
    }
    return slo_result(
        slo,
        round(fm.measured, 6),
        passed=fm.recovered and fm.measured <= slo.max,
        source=fm.source,
        error_bound_seconds=bound,
        details=details,
    )


async def replication_lag(slo: ReplicationLagSLO, ctx: SLOContext) -> SLOResult:
    """From the lag query (the exporters), from the datastore canaries, or both side by
    side; by default from every source the run has."""
    windows = [f for f in ctx.faults if f.effective_at is not None]
    if not windows:
        return _unknown(slo, slo.source or "prometheus", "no fault took effect")
    fault_start = min(f.effective_at for f in windows if f.effective_at is not None)
    fault_end = max((f.reverted_at or ctx.end) for f in windows)
    expr = slo.promql or ctx.endpoints.queries.get("replicationLag")
    links = _canary_links(ctx)
    wanted = slo.source
    if wanted is None:
        wanted = "both" if expr and links else ("canary" if links and not expr else "prometheus")
    results = []
    if wanted in ("prometheus", "both"):
        results.append(await _lag_from_prometheus(slo, ctx, expr, fault_start, fault_end))
    if wanted in ("canary", "both"):
        results.append(_lag_from_canaries(slo, links, fault_start, fault_end))
    return combine_sources(slo, results)


def _canary_links(ctx: SLOContext) -> dict[str, list[tuple[float, float, float]]]:
    return ctx.datastores.lag_samples() if ctx.datastores else {}


def _lag_verdict(slo: ReplicationLagSLO, lm: ReplicationLag) -> bool:
    ok = lm.measured is not None and lm.measured <= slo.max
    if slo.recover_within is not None:
        back = lm.recovered_after
        ok = ok and back is not None and back <= slo.recover_within
    return ok


def _lag_from_canaries(
    slo: ReplicationLagSLO,
    links: dict[str, list[tuple[float, float, float]]],
    fault_start: float,
    fault_end: float,
) -> SLOResult:
    if not links:
        return _unknown(slo, "canary", "no datastore canaries crossed any link")
    lm = m_lag.canary_replication_lag(
        links, fault_start, fault_end, max_s=slo.max, recover_within=slo.recover_within
    )
    if lm.no_data or lm.measured is None:
        return _unknown(slo, "canary", "no canary lag during the faults")
    details = {**lm.details, "recoveredAfterSeconds": lm.recovered_after}
    return slo_result(
        slo,
        round(lm.measured, 6),
        passed=_lag_verdict(slo, lm),
        source="canary",
        error_bound_seconds=lm.error_bound_seconds,
        details=details,
    )


async def _lag_from_prometheus(
    slo: ReplicationLagSLO, ctx: SLOContext, expr: str | None, fault_start: float, fault_end: float
) -> SLOResult:
    if not expr or ctx.prom is None:
        return _unknown(slo, "prometheus", "no replication-lag query")
    interval = await _scrape_interval(ctx)
    try:
        series = await _range(ctx, expr, fault_start - interval, ctx.end, interval)
    except ChaosaaError as exc:
        return _unknown(slo, "prometheus", f"query failed: {exc}")
    lm = m_lag.replication_lag(
        series,
        fault_start,
        fault_end,
        max_s=slo.max,
        recover_within=slo.recover_within,
        step=interval,
        scrape_interval=interval,
    )
    if lm.no_data or lm.measured is None:
        return _unknown(slo, "prometheus", "no lag series during the faults")
    details = {**lm.details, "peakAt": lm.peak_at, "recoveredAfterSeconds": lm.recovered_after}
    if ctx.canary:
        details["canaryLagSeconds"] = ctx.canary
    elif slo.canary and not canary_applies(ctx.spec):
        details["canary"] = "skipped: canary writes need the kv probe's protocol"
    return slo_result(
        slo,
        round(lm.measured, 6),
        passed=_lag_verdict(slo, lm),
        source="prometheus",
        error_bound_seconds=lm.error_bound_seconds,
        details=details,
    )


def lost_writes(slo: LostWritesSLO, ctx: SLOContext) -> SLOResult:
    """Acknowledged writes of the traffic probe read back from every region, plus every
    datastore's acknowledged canaries read back from every region."""
    watches = ctx.datastores.watches if ctx.datastores else []
    canaries: dict[str, dict[str, Any]] = {
        w.name: {
            "acknowledged": w.integrity.acknowledged,
            "lost": w.integrity.lost,
            "divergent": w.integrity.divergent,
            "convergedAfterSeconds": w.integrity.converged_after,
        }
        for w in watches
        if w.integrity is not None
    }
    unverified = [w.name for w in watches if w.integrity is None]
    if unverified:
        return _unknown(slo, "readback", f"canaries of {', '.join(unverified)} not read back")
    canary_lost = sum(int(c["lost"]) for c in canaries.values())
    if not ctx.acked and not canaries:
        return _unknown(slo, "readback", "no acknowledged writes to check")
    if ctx.lost_details.get("noData"):
        return _unknown(slo, "readback", "some writes could not be read back", **ctx.lost_details)
    details: dict[str, Any] = {
        "acknowledgedWrites": len(ctx.acked),
        "divergentKeys": ctx.divergent_keys,
        **ctx.lost_details,
    }
    if canaries:
        details["canaries"] = canaries
    source = "readback+canary" if canaries and ctx.acked else ("canary" if canaries else None)
    return slo_result(
        slo, float(ctx.lost_writes + canary_lost), source=source or "readback", details=details
    )


async def error_rate(slo: ErrorRateSLO, ctx: SLOContext) -> SLOResult:
    window = slo_window(slo, ctx)
    if isinstance(window, str):
        return _unknown(slo, slo.source, window)
    if slo.source == "probe":
        er = m_traffic.error_rate(
            list(ctx.samples),
            window.start,
            window.end,
            slo.requests,
            regions=slo.regions or None,
            homes=slo.homes or None,
        )
        if er.no_data or er.measured is None:
            return _unknown(slo, "probe", f"no requests ({slo.requests})", **window.details)
        details = {**window.details, **er.details}
        return slo_result(slo, round(er.measured, 6), source="probe", details=details)
    expr = slo.promql or ctx.endpoints.queries.get("errorRatio")
    if not expr:
        return _unknown(slo, "prometheus", "no error-ratio query")
    return await _aggregated_slo(slo, ctx, expr, "avg", window)


async def latency(slo: LatencySLO, ctx: SLOContext) -> SLOResult:
    """The SLO's percentile of the probe's latency over its window, overall or the slowest
    serving region (``perRegion``), each region's beside its value before the faults."""
    window = slo_window(slo, ctx)
    if isinstance(window, str):
        return _unknown(slo, "probe", window)
    q = slo.quantile
    lm = measure_latency(
        ctx.samples,
        window.start,
        window.end,
        baseline=window.baseline,
        objective=q,
        regions=slo.regions or None,
        homes=slo.homes or None,
        failures=slo.failures,
    )
    regions = {r: s.percentiles[q] for r, s in lm.window.by_region.items() if s.counted}
    before = lm.baseline.by_region if lm.baseline is not None else {}
    details = {
        **window.details,
        "percentile": slo.percentile,
        "perRegion": slo.per_region,
        "byRegion": {
            region: {
                "value": _finite(p.value),
                "samples": p.samples,
                "errorBound": p.error_bound,
                "before": _finite(before[region].percentiles[q].value)
                if region in before
                else None,
            }
            for region, p in sorted(regions.items())
        },
        **lm.details,
    }
    if slo.per_region:
        return _slowest_region(slo, regions, details, lm.details["sendErrorP99"], ctx)
    if lm.measured is not None and math.isinf(lm.measured):
        return _failures_reach_percentile(slo, details, ctx)
    if lm.no_data or lm.measured is None:
        return _unknown(slo, "probe", str(details.get("reason", "no data")), **details)
    return slo_result(
        slo,
        round(lm.measured, 6),
        source="probe",
        error_bound_seconds=lm.error_bound_seconds,
        details=details,
    )


def _slowest_region(
    slo: LatencySLO,
    regions: dict[str, Percentile],
    details: dict[str, Any],
    resolution: float,
    ctx: SLOContext,
) -> SLOResult:
    """perRegion: the slowest region's percentile is the measured value. One region over
    the objective fails the SLO; otherwise a region too thin to bound its percentile from
    above makes it unknown."""
    if not regions:
        return _unknown(slo, "probe", "no region served a request in the window", **details)
    if any(p.value is not None and math.isinf(p.value) for p in regions.values()):
        return _failures_reach_percentile(slo, details, ctx)
    region, worst = max(regions.items(), key=lambda kv: kv[1].value or 0.0)
    assert worst.value is not None
    details["slowestRegion"] = region
    thin = sorted(r for r, p in regions.items() if p.high is None)
    if worst.value <= slo.max and thin:
        needed = needed_samples(slo.quantile)
        why = (
            f"too few requests to bound p{slo.percentile:g} in {', '.join(thin)} (needs ~{needed})"
        )
        return _unknown(slo, "probe", why, **details)
    bound = worst.error_bound
    return slo_result(
        slo,
        round(worst.value, 6),
        source="probe",
        error_bound_seconds=None if bound is None else bound + resolution,
        details=details,
    )


def _failures_reach_percentile(
    slo: LatencySLO, details: dict[str, Any], ctx: SLOContext
) -> SLOResult:
    """failures slowest: so many requests failed that the percentile is a failure. JSON has
    no infinity: the measured value is the request timeout, the least a failure "takes"
    here, which is above the objective (validation keeps max below the timeout)."""
    timeout = ctx.spec.traffic.timeout
    details["reason"] = "failed requests (counted as slowest) reach the percentile"
    details["measuredIs"] = "the request timeout"
    return slo_result(slo, timeout, passed=False, source="probe", details=details)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


async def _aggregate(
    ctx: SLOContext, expr: str, how: Aggregate, start: float, end: float
) -> Measurement:
    assert ctx.prom is not None
    interval = await _scrape_interval(ctx)
    series = await _range(ctx, expr, start, end, interval)
    return aggregate(series, how, start=start, end=end, error_bound_seconds=interval * 2)


async def _aggregated_slo(
    slo: ErrorRateSLO | PromQLSLO,
    ctx: SLOContext,
    expr: str,
    how: Aggregate,
    window: Window | None = None,
) -> SLOResult:
    """An SLO whose number is one PromQL series reduced over the run, or its ``window``
    (max/min/avg/last)."""
    if ctx.prom is None:
        return _unknown(slo, "prometheus", "no Prometheus")
    start, end = (ctx.start, ctx.end) if window is None else (window.start, window.end)
    try:
        agg = await _aggregate(ctx, expr, how, start, end)
    except ChaosaaError as exc:
        return _unknown(slo, "prometheus", f"query failed: {exc}")
    if agg.no_data or agg.measured is None or math.isnan(agg.measured):
        return _unknown(slo, "prometheus", "no data")
    extra = window.details if window is not None else {}
    return slo_result(
        slo,
        agg.measured,
        source="prometheus",
        error_bound_seconds=agg.error_bound_seconds,
        details={"aggregate": how, **extra, **agg.details},
    )


async def promql(slo: PromQLSLO, ctx: SLOContext) -> SLOResult:
    return await _aggregated_slo(slo, ctx, slo.promql, slo.aggregate)


async def evaluate_slo(slo: SLO, ctx: SLOContext) -> SLOResult:
    try:
        if isinstance(slo, FailoverTimeSLO):
            return await failover_time(slo, ctx)
        if isinstance(slo, ReplicationLagSLO):
            return await replication_lag(slo, ctx)
        if isinstance(slo, LostWritesSLO):
            return lost_writes(slo, ctx)
        if isinstance(slo, ErrorRateSLO):
            return await error_rate(slo, ctx)
        if isinstance(slo, LatencySLO):
            return await latency(slo, ctx)
        return await promql(slo, ctx)
    except ChaosaaError as exc:
        log.warning("SLO %s could not be evaluated: %s", slo.name, exc)
        return _unknown(slo, "", f"evaluation failed: {exc}")


async def evaluate_slos(ctx: SLOContext) -> list[SLOResult]:
    return [await evaluate_slo(slo, ctx) for slo in ctx.spec.slos]
