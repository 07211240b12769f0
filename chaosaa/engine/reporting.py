"""Turn a finished run's outcome into the report (report.json, junit.xml, report.html)."""

from __future__ import annotations

import math

from chaosaa.engine.canaries import DatastoreCanaries, Watch
from chaosaa.engine.faults import FaultRecord
from chaosaa.engine.findings import write_counts, write_findings
from chaosaa.engine.outcome import RunOutcome
from chaosaa.engine.verdict import finish, slo_not_evaluated
from chaosaa.errors import ExitCode
from chaosaa.measure.traffic import region_of
from chaosaa.measure.writes import Attempt, attempted_writes, probe_writes
from chaosaa.report.chartdata import build_chart, series_points
from chaosaa.report.model import (
    CanaryIntegrity,
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
    attempts = _canary_attempts(outcome.datastores)
    for rec in outcome.faults:
        result = fault_result(rec)
        if rec.effective_at is not None:
            # in place for sure until the revert was asked for
            end = rec.revert_requested_at or rec.reverted_at or outcome.finished_at
            result.probe_writes = write_counts(probe_writes(outcome.samples, rec.effective_at, end))
            result.canary_writes = write_counts(attempted_writes(attempts, rec.effective_at, end))
        report.record_fault(result)
    report.findings = write_findings(report.faults)
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
        canaries=[_canary_integrity(w) for w in outcome.datastores.watches],
    )
    report.chart = build_chart(report, samples=outcome.samples, lag_series=outcome.lag_series)
    report.chart.canary_lag = {
        link: [(t, lag) for t, lag, _ in samples]
        for link, samples in outcome.datastores.lag_samples().items()
    }
    report.chart.canary_write_errors = _refused_share(attempts)
    report.chart.region_ready = {
        key.removeprefix("region="): points
        for key, points in series_points(outcome.region_ready).items()
    }
    finish(report, finished_at=outcome.finished_at, stopped=outcome.stopped, reason=outcome.reason)
    return report


def _canary_attempts(datastores: DatastoreCanaries) -> dict[str, list[Attempt]]:
    """Every canary write attempt per region, over every datastore."""
    out: dict[str, list[Attempt]] = {}
    for by_region in datastores.attempts().values():
        for region, events in by_region.items():
            out.setdefault(region, []).extend(events)
    return out


def _refused_share(attempts: dict[str, list[Attempt]]) -> dict[str, list[tuple[float, float]]]:
    """Per region (those that refused any), the share of canary writes sent in each second
    that were refused or went unanswered, in percent."""
    out = {}
    for region, events in sorted(attempts.items()):
        buckets: dict[int, list[int]] = {}
        for sent, _, ok in events:
            counts = buckets.setdefault(math.floor(sent), [0, 0])
            counts[0] += 1
            counts[1] += not ok
        if any(refused for _, refused in buckets.values()):
            out[region] = [
                (float(t), 100.0 * refused / n) for t, (n, refused) in sorted(buckets.items())
            ]
    return out


def _canary_integrity(watch: Watch) -> CanaryIntegrity:
    probe, integrity = watch.probe, watch.integrity
    links = {
        f"{ls.source}->{ls.target}": {
            "canariesSeen": ls.canaries_seen,
            "pending": ls.pending,
            "peakLagSeconds": ls.peak_lag,
            "resolutionSeconds": ls.resolution,
            "pollErrors": ls.poll_errors,
        }
        for ls in probe.summary()
    }
    out = CanaryIntegrity(
        datastore=watch.name,
        write_errors={r: w.errors for r, w in probe.writers.items()},
        links=links,
        error=watch.error,
    )
    if integrity is not None:
        out.acknowledged = integrity.acknowledged
        out.lost = integrity.lost
        out.divergent = integrity.divergent
        out.converged_after_seconds = integrity.converged_after
        out.checked = True
        out.lost_canaries = list(integrity.lost_canaries)
        out.unreadable_regions = dict(integrity.unreadable_regions)
    return out
