"""Deterministic example reports: a region-down GameDay that passed, failed or aborted.

Built through the same calls the engine makes (:func:`new_report`, :func:`slo_result`,
:func:`build_chart`, :func:`finish`...), from synthetic traffic. Test fixtures.
"""

from __future__ import annotations

import asyncio
import random
from typing import Literal

from chaosaa.engine.faults import FaultRecord
from chaosaa.engine.reporting import fault_result, new_report
from chaosaa.engine.slo import SLOContext, latency
from chaosaa.engine.verdict import (
    finish,
    slo_result,
    steady_state_not_evaluated,
    steady_state_result,
)
from chaosaa.errors import ExitCode
from chaosaa.model import Sample, Series
from chaosaa.report.chartdata import build_chart
from chaosaa.report.model import (
    DataIntegrity,
    RegionTraffic,
    RunReport,
    Traffic,
)
from chaosaa.spec.model import GameDay
from chaosaa.targets.base import Endpoints

Outcome = Literal["passed", "failed", "aborted"]

START = 1_795_687_200.0  # 2026-11-26T10:00:00Z
REGIONS = ("us", "eu", "ap")


#: a latency SLO that example reports carry when asked (``with_latency``)
SURVIVORS_P99 = {
    "name": "survivors-p99",
    "type": "latency",
    "max": "250ms",
    "fault": "eu-dark",
    "settle": "5s",
    "perRegion": True,
}


def example_gameday(with_latency: bool = False) -> GameDay:
    gameday = GameDay.model_validate(
        {
            "apiVersion": "chaosaa.io/v1alpha1",
            "kind": "GameDay",
            "metadata": {"name": "region-down"},
            "spec": {
                "description": (
                    "EU goes dark; the other regions must absorb its traffic within 30s."
                ),
                "target": {"kind": "lab", "regions": {r: {} for r in REGIONS}},
                "steadyState": [
                    {
                        "name": "success-rate",
                        "promql": 'sum(rate(chaosaa_demo_requests_total{code!~"5.."}[15s]))'
                        " / sum(rate(chaosaa_demo_requests_total[15s]))",
                        "expect": ">= 0.99",
                    }
                ],
                "faults": [
                    {
                        "name": "eu-dark",
                        "type": "blackhole",
                        "regions": ["eu"],
                        "after": "10s",
                        "duration": "60s",
                    }
                ],
                "slos": [
                    {"name": "failover", "type": "failoverTime", "max": "30s"},
                    {
                        "name": "lag",
                        "type": "replicationLag",
                        "promql": "max(chaosaa_demo_replication_lag_seconds)",
                        "max": "60s",
                        "recoverWithin": "30s",
                    },
                    {"name": "no-lost-writes", "type": "lostWrites", "max": 0},
                    {
                        "name": "p99-latency",
                        "type": "promql",
                        "promql": "histogram_quantile(0.99, rate(x_bucket[1m]))",
                        "expect": "< 0.5",
                        "onNoData": "ignore",
                    },
                ],
            },
        }
    )
    if not with_latency:
        return gameday
    doc = gameday.model_dump(by_alias=True, exclude_unset=True)
    doc["spec"]["slos"].append(SURVIVORS_P99)
    return GameDay.model_validate(doc)


def example_report(outcome: Outcome = "passed", with_latency: bool = False) -> RunReport:
    """A complete report. ``failed``: failover 42s and 3 lost writes; ``aborted``: the
    steady state did not hold before injection (no traffic chart, fault never injected).
    ``with_latency``: also the latency SLO ``survivors-p99``, measured from the traffic
    (``failed``: eu's clients wait 300 ms once us serves them)."""
    gameday = example_gameday(with_latency)
    report = new_report(gameday, started_at=START, run_id=f"region-down-{outcome}")
    check = gameday.spec.steady_state[0]
    report.event(START, "phase.preflight")
    report.event(START + 5.0, "phase.steady-state")
    if outcome == "aborted":
        return _aborted(report, gameday)

    failover = 42.0 if outcome == "failed" else 4.21
    t_request, t_effect = START + 20.0, START + 20.012
    t_revert_request, t_reverted = START + 80.0, START + 80.004
    slow = with_latency and outcome == "failed"
    samples = _samples(t_effect, failover, end=START + 110.0, slow=slow)
    report.steady_state.before.append(steady_state_result(check, 0.998, at=START + 5.0))
    report.event(START + 20.0, "phase.inject")
    report.event(t_request, "fault.requested", fault="eu-dark")
    report.event(t_effect, "fault.effective", fault="eu-dark", verifiedBy="link proxies")
    report.event(t_effect + failover, "failover.recovered", slo="failover", seconds=failover)
    report.event(t_revert_request, "phase.revert")
    report.event(t_reverted, "fault.reverted", fault="eu-dark")
    report.event(START + 90.0, "phase.recover")
    report.event(START + 110.0, "phase.verify")
    record = FaultRecord(
        gameday.spec.faults[0],
        requested_at=t_request,
        effective_at=t_effect,
        revert_requested_at=t_revert_request,
        reverted_at=t_reverted,
    )
    report.record_fault(fault_result(record))
    slos = {slo.name: slo for slo in gameday.spec.slos}
    report.record_slo(
        slo_result(
            slos["failover"],
            failover,
            source="probe",
            error_bound_seconds=0.02,
            details={"degraded": True, "fault": "eu-dark", "threshold": 0.99, "sustain": 5.0},
        )
    )
    peak = 38.5 if outcome == "passed" else 71.0
    report.record_slo(
        slo_result(
            slos["lag"],
            peak,
            source="prometheus",
            error_bound_seconds=2.0,
            details={"recoveredWithin": 6.0, "canaryPeak": peak - 0.7},
        )
    )
    lost = 0 if outcome == "passed" else 3
    report.record_slo(slo_result(slos["no-lost-writes"], lost, source="readback"))
    report.record_slo(
        slo_result(slos["p99-latency"], None, details={"reason": "the query returned no series"})
    )
    if with_latency:
        report.record_slo(asyncio.run(latency(slos["survivors-p99"], _context(record, samples))))
    report.steady_state.after.append(
        steady_state_result(check, 0.999 if outcome == "passed" else 0.97, at=START + 108.0)
    )
    writes = [s for s in samples if s.write and s.ok]
    report.traffic = _traffic(samples)
    report.data_integrity = DataIntegrity(
        acknowledged_writes=len(writes),
        lost=lost,
        divergent_keys=1 if lost else 0,
        conflicts=4,
        checked=True,
        lost_keys=[f"key-{i}" for i in range(lost)],
    )
    report.chart = build_chart(report, samples=samples, lag_series=_lag(t_effect, t_reverted, peak))
    finish(report, finished_at=START + 112.5)
    return report


def _aborted(report: RunReport, gameday: GameDay) -> RunReport:
    check = gameday.spec.steady_state[0]
    report.steady_state.before.append(steady_state_result(check, 0.91, at=START + 5.0))
    report.steady_state.after.append(
        steady_state_not_evaluated(check, "the run was aborted before injection")
    )
    reason = "steady state not met before injection: success-rate = 0.91, expected >= 0.99"
    report.event(START + 5.2, "abort", reason=reason)
    report.event(START + 5.3, "phase.revert", faults=0)
    finish(report, finished_at=START + 6.0, stopped=ExitCode.ABORTED, reason=reason)
    return report


def _context(record: FaultRecord, samples: list[Sample]) -> SLOContext:
    return SLOContext(
        spec=example_gameday(with_latency=True).spec,
        prom=None,
        endpoints=Endpoints(entry_url=None),
        faults=[record],
        samples=samples,
        acked=[],
        lost_writes=0,
        divergent_keys=0,
        end=START + 110.0,
        rate=50.0,
        start=START + 20.0,
    )


def _samples(t_effect: float, failover: float, *, end: float, slow: bool) -> list[Sample]:
    """50 req/s spread over three homes; eu-home requests fail from the moment eu goes
    dark until the router has failed them over to us; ``slow``: then they take 300 ms."""
    rng = random.Random(7)
    out = []
    t = START + 2.0
    i = 0
    while t < end:
        home = REGIONS[i % 3]
        write = rng.random() < 0.3
        dark = home == "eu" and t_effect <= t < t_effect + failover
        if dark:
            out.append(Sample(t, 1.0, 0, None, home, write, error="timeout"))
        else:
            failed_over = home == "eu" and t_effect <= t < START + 85
            served = "us" if failed_over else home
            status = 503 if rng.random() < 0.002 else 200
            seconds = 0.004 + rng.random() * 0.02 + (0.3 if slow and failed_over else 0.0)
            out.append(Sample(t, seconds, status, served, home, write))
        t += 0.02
        i += 1
    return out


def _lag(t_effect: float, t_reverted: float, peak: float) -> list[Series]:
    series = []
    for source, scale in (("us", 1.0), ("ap", 0.93)):
        points = []
        t = START + 2.0
        while t < START + 110.0:
            if t_effect <= t < t_reverted:
                lag = min(peak * scale, (t - t_effect) * peak / 40) if peak else 0.0
            elif t >= t_reverted:
                lag = max(0.05, peak * scale * (1 - (t - t_reverted) / 6))
            else:
                lag = 0.05
            points.append((t, round(lag, 3)))
            t += 1.0
        series.append(Series(labels={"source": source, "target": "eu"}, points=points))
    series.append(
        Series(
            labels={"source": "eu", "target": "us"},
            points=[(START + 2.0 + k, 0.04) for k in range(108)],
        )
    )
    return series


def _traffic(samples: list[Sample]) -> Traffic:
    by_region: dict[str, RegionTraffic] = {r: RegionTraffic() for r in REGIONS}
    for s in samples:
        entry = by_region.setdefault(s.home or "unknown", RegionTraffic())
        entry.requests += 1
        entry.errors += 0 if s.ok else 1
    return Traffic(
        requests=len(samples),
        errors=sum(not s.ok for s in samples),
        by_region=by_region,
    )


__all__ = ["example_gameday", "example_report"]
