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

from chaosaa.durations import format_duration
from chaosaa.engine.faults import FaultRecord
from chaosaa.errors import ChaosaaError
from chaosaa.measure import failover as m_failover
from chaosaa.measure import lag as m_lag
from chaosaa.measure import promql as m_promql
from chaosaa.measure import traffic as m_traffic
from chaosaa.model import AckedWrite, Sample, Series
from chaosaa.prom.client import PrometheusClient
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
class SLOResult:
    name: str
    type: str
    objective: str
    measured: float | None
    unit: str
    verdict: str  # passed | failed | unknown
    source: str
    error_bound_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    ignored: bool = False  # unknown but onNoData: ignore


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


def _unknown(slo: SLO, objective: str, unit: str, source: str, why: str, **details: Any) -> SLOResult:
    ignored = slo.on_no_data == "ignore"
    return SLOResult(
        slo.name,
        slo.type,
        objective,
        None,
        unit,
        "unknown",
        source,
        details={"reason": why, **details},
        ignored=ignored,
    )


def _verdict(ok: bool) -> str:
    return "passed" if ok else "failed"


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
    objective = f"<= {format_duration(slo.max)}"
    rec = _fault_for(slo, ctx.faults)
    if rec is None or rec.effective_at is None:
        return _unknown(slo, objective, "s", slo.source, "the fault never took effect")
    t_effect = rec.effective_at
    if slo.source == "probe":
        fm = m_failover.failover_time_from_samples(
            list(ctx.samples),
            t_effect,
            threshold=slo.threshold,
            sustain=slo.sustain,
            end=ctx.end,
        )
    else:
        expr = slo.promql or ctx.endpoints.queries.get("successRatio")
        if not expr or ctx.prom is None:
            return _unknown(slo, objective, "s", "prometheus", "no success-ratio query")
        interval = await _scrape_interval(ctx)
        series = await _range(ctx, expr, t_effect - interval, ctx.end, interval)
        points = series[0].points if series else []
        fm = m_failover.failover_time_from_series(
            points,
            t_effect,
            threshold=slo.threshold,
            sustain=slo.sustain,
            step=interval,
            scrape_interval=interval,
        )
    if fm.no_data or fm.measured is None:
        return _unknown(slo, objective, "s", fm.source, "no data after the fault took effect")
    details = dict(fm.details)
    details["fault"] = rec.fault.name
    details["effectiveAt"] = t_effect
    recovered = details.get("recovered", True)
    ok = bool(recovered) and fm.measured <= slo.max
    return SLOResult(
        slo.name,
        slo.type,
        objective,
        round(fm.measured, 6),
        "s",
        _verdict(ok),
        fm.source,
        fm.error_bound_seconds,
        details,
    )


async def replication_lag(slo: ReplicationLagSLO, ctx: SLOContext) -> SLOResult:
    objective = f"<= {format_duration(slo.max)}"
    if slo.recover_within is not None:
        objective += f", recovered within {format_duration(slo.recover_within)}"
    expr = slo.promql or ctx.endpoints.queries.get("replicationLag")
    windows = [f for f in ctx.faults if f.effective_at is not None]
    if not expr or ctx.prom is None:
        return _unknown(slo, objective, "s", "prometheus", "no replication-lag query")
    if not windows:
        return _unknown(slo, objective, "s", "prometheus", "no fault took effect")
    fault_start = min(f.effective_at for f in windows if f.effective_at is not None)
    fault_end = max((f.reverted_at or ctx.end) for f in windows)
    interval = await _scrape_interval(ctx)
    try:
        series = await _range(ctx, expr, fault_start - interval, ctx.end, interval)
    except ChaosaaError as exc:
        return _unknown(slo, objective, "s", "prometheus", f"query failed: {exc}")
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
        return _unknown(slo, objective, "s", "prometheus", "no lag series during the faults")
    details = dict(lm.details)
    if ctx.canary:
        details["canaryLagSeconds"] = ctx.canary
    ok = lm.measured <= slo.max
    if slo.recover_within is not None:
        recovered = details.get("recoveredAfterSeconds")
        ok = ok and recovered is not None and recovered <= slo.recover_within
    return SLOResult(
        slo.name,
        slo.type,
        objective,
        round(lm.measured, 6),
        "s",
        _verdict(ok),
        "prometheus",
        lm.error_bound_seconds,
        details,
    )


def lost_writes(slo: LostWritesSLO, ctx: SLOContext) -> SLOResult:
    objective = f"<= {slo.max}"
    if not ctx.acked:
        return _unknown(slo, objective, "writes", "probe", "no acknowledged writes to check")
    details = {"acknowledgedWrites": len(ctx.acked), "divergentKeys": ctx.divergent_keys}
    details.update(ctx.lost_details)
    return SLOResult(
        slo.name,
        slo.type,
        objective,
        float(ctx.lost_writes),
        "writes",
        _verdict(ctx.lost_writes <= slo.max),
        "probe",
        None,
        details,
    )


async def error_rate(slo: ErrorRateSLO, ctx: SLOContext) -> SLOResult:
    objective = f"<= {slo.max:g}"
    if slo.source == "probe":
        er = m_traffic.error_rate(list(ctx.samples), ctx.start, ctx.end)
        if er.no_data or er.measured is None:
            return _unknown(slo, objective, "ratio", "probe", "no requests")
        return SLOResult(
            slo.name, slo.type, objective, round(er.measured, 6), "ratio",
            _verdict(er.measured <= slo.max), "probe", None, dict(er.details),
        )
    expr = slo.promql or ctx.endpoints.queries.get("errorRatio")
    if not expr:
        return _unknown(slo, objective, "ratio", "prometheus", "no error-ratio query")
    agg = PromQLSLO(name=slo.name, type="promql", promql=expr, max=slo.max, aggregate="avg")
    res = await promql(agg, ctx)
    res.type, res.objective = slo.type, objective
    return res


async def promql(slo: PromQLSLO, ctx: SLOContext) -> SLOResult:
    objective = str(slo.objective)
    if ctx.prom is None:
        return _unknown(slo, objective, "", "prometheus", "no Prometheus")
    interval = await _scrape_interval(ctx)
    try:
        series = await _range(ctx, slo.promql, ctx.start, ctx.end, interval)
    except ChaosaaError as exc:
        return _unknown(slo, objective, "", "prometheus", f"query failed: {exc}")
    value = m_promql.aggregate(series, slo.aggregate)
    if value is None or math.isnan(value):
        return _unknown(slo, objective, "", "prometheus", "no data")
    return SLOResult(
        slo.name, slo.type, objective, value, "", _verdict(slo.objective.holds(value)),
        "prometheus", interval * 2, {"aggregate": slo.aggregate, "series": len(series)},
    )


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
        return _unknown(slo, "", "", "", f"evaluation failed: {exc}")


async def evaluate_slos(ctx: SLOContext) -> list[SLOResult]:
    return [await evaluate_slo(slo, ctx) for slo in ctx.spec.slos]
