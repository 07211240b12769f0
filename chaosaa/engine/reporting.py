"""Turn a finished run's outcome into the report (report.json, junit.xml, report.html)."""

from __future__ import annotations

from chaosaa.engine.faults import FaultRecord
from chaosaa.engine.outcome import RunOutcome
from chaosaa.engine.verdict import finish, slo_not_evaluated
from chaosaa.errors import ExitCode
from chaosaa.measure.traffic import region_of
from chaosaa.report.chartdata import build_chart
from chaosaa.report.model import (
    DataIntegrity,
    FaultResult,
    RegionTraffic,
    RunReport,
    TargetInfo,
    Traffic,
)
from chaosaa.spec.model import GameDay


def new_report(gameday: GameDay, *, started_at: float, run_id: str | None = None) -> RunReport:
    """A report for a run that is starting: every fault listed as never injected and every
    SLO as not evaluated, so a run that stops early still says what it did not do.
    Verdict ``error`` until :func:`chaosaa.engine.verdict.finish`."""
    spec = gameday.spec
    return RunReport(
        gameday=gameday.name,
        description=spec.description,
        run_id=run_id,
        verdict="error",
        exit_code=int(ExitCode.ENVIRONMENT),
        started_at=started_at,
        finished_at=started_at,
        target=TargetInfo(kind=spec.target.kind, regions=list(spec.target.regions)),
        faults=[FaultResult(name=f.name, type=f.type, scope=str(f.scope())) for f in spec.faults],
        slos=[
            slo_not_evaluated(slo, "the run stopped before this SLO was evaluated")
            for slo in spec.slos
        ],
        traffic=Traffic(by_region={region: RegionTraffic() for region in spec.target.regions}),
    )


def fault_result(record: FaultRecord) -> FaultResult:
    """A fault's entry in the report, from its one timeline."""
    fault = record.fault
    return FaultResult(
        name=fault.name,
        type=fault.type,
        requested_at=record.requested_at,
        effective_at=record.effective_at,
        reverted_at=record.reverted_at,
        time_to_effect_seconds=record.time_to_effect,
        time_to_revert_seconds=record.time_to_revert,
        revert_requested_at=record.revert_requested_at,
        scope=str(fault.scope()),
        error=record.error,
    )


def _traffic(outcome: RunOutcome) -> Traffic:
    by_region: dict[str, RegionTraffic] = {
        r: RegionTraffic() for r in outcome.gameday.spec.target.regions
    }
    errors = 0
    for s in outcome.samples:
        region = by_region.setdefault(region_of(s), RegionTraffic())
        region.requests += 1
        if not s.ok:
            region.errors += 1
            errors += 1
    return Traffic(requests=len(outcome.samples), errors=errors, by_region=by_region)


def build_report(outcome: RunOutcome) -> RunReport:
    gd = outcome.gameday
    report = new_report(gd, started_at=outcome.started_at, run_id=outcome.run_id)
    events = [(item["at"], item["event"], item["detail"]) for item in outcome.timeline]
    # the target's own ground truth (e.g. the lab router's failover log) interleaved
    events += [(e.at, f"target.{e.event}", dict(e.detail)) for e in outcome.target_events]
    for at, event, detail in sorted(events, key=lambda e: e[0]):
        report.event(at, event, **detail)
    for rec in outcome.faults:
        report.record_fault(fault_result(rec))
    report.steady_state.before = list(outcome.steady_before)
    report.steady_state.after = list(outcome.steady_after)
    for slo in outcome.slos:
        report.record_slo(slo)
    report.traffic = _traffic(outcome)
    report.data_integrity = DataIntegrity(
        acknowledged_writes=len(outcome.acked),
        lost=outcome.lost_writes,
        divergent_keys=outcome.divergent_keys,
        conflicts=outcome.conflicts,
        checked=outcome.integrity_checked,
    )
    report.chart = build_chart(report, samples=outcome.samples, lag_series=outcome.lag_series)
    finish(report, finished_at=outcome.finished_at, stopped=outcome.stopped, reason=outcome.reason)
    return report
