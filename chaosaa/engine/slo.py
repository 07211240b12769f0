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
from chaosaa.measure.result import Measurement, ReplicationLag
from chaosaa.model import AckedWrite, Sample, Series
from chaosaa.prom.client import PrometheusClient
from chaosaa.report.model import SLOResult
from chaosaa.spec.model import (
    SLO,
    ErrorRateSLO,
    FailoverTimeSLO,
    GameDaySpec,
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
    if slo.source == "probe":
        er = m_traffic.error_rate(list(ctx.samples), ctx.start, ctx.end, slo.requests)
        if er.no_data or er.measured is None:
            return _unknown(slo, "probe", f"no requests ({slo.requests})")
        return slo_result(slo, round(er.measured, 6), source="probe", details=dict(er.details))
    expr = slo.promql or ctx.endpoints.queries.get("errorRatio")
    if not expr:
        return _unknown(slo, "prometheus", "no error-ratio query")
    return await _aggregated_slo(slo, ctx, expr, "avg")


async def _aggregate(ctx: SLOContext, expr: str, how: Aggregate) -> Measurement:
    assert ctx.prom is not None
    interval = await _scrape_interval(ctx)
    series = await _range(ctx, expr, ctx.start, ctx.end, interval)
    return aggregate(series, how, start=ctx.start, end=ctx.end, error_bound_seconds=interval * 2)


async def _aggregated_slo(
    slo: ErrorRateSLO | PromQLSLO, ctx: SLOContext, expr: str, how: Aggregate
) -> SLOResult:
    """An SLO whose number is one PromQL series reduced over the run (max/min/avg/last)."""
    if ctx.prom is None:
        return _unknown(slo, "prometheus", "no Prometheus")
    try:
        agg = await _aggregate(ctx, expr, how)
    except ChaosaaError as exc:
        return _unknown(slo, "prometheus", f"query failed: {exc}")
    if agg.no_data or agg.measured is None or math.isnan(agg.measured):
        return _unknown(slo, "prometheus", "no data")
    return slo_result(
        slo,
        agg.measured,
        source="prometheus",
        error_bound_seconds=agg.error_bound_seconds,
        details={"aggregate": how, **agg.details},
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
        return await promql(slo, ctx)
    except ChaosaaError as exc:
        log.warning("SLO %s could not be evaluated: %s", slo.name, exc)
        return _unknown(slo, "", f"evaluation failed: {exc}")


async def evaluate_slos(ctx: SLOContext) -> list[SLOResult]:
    return [await evaluate_slo(slo, ctx) for slo in ctx.spec.slos]
