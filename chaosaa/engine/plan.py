"""``chaosaa plan``: exactly what a run would do, in order, touching nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from chaosaa.durations import format_duration
from chaosaa.engine.recovery import recovery_wait
from chaosaa.engine.verdict import slo_objective
from chaosaa.measure.latency import needed_samples
from chaosaa.spec.checks import canary_applies, uses_prometheus
from chaosaa.spec.model import (
    SLO,
    ErrorRateSLO,
    FailoverTimeSLO,
    GameDay,
    GameDaySpec,
    LatencySLO,
    LostWritesSLO,
    PromQLSLO,
    ReplicationLagSLO,
)
from chaosaa.spec.traffic import HttpProbe
from chaosaa.targets.base import PlannedAction, Target, TargetOptions, target_for
from chaosaa.traffic.profile import load_plan


@dataclass(frozen=True)
class PlannedFault:
    name: str
    type: str
    at: float  # seconds after injection starts
    until: float
    ttl: float
    actions: list[PlannedAction]


@dataclass(frozen=True)
class Plan:
    gameday: str
    target_kind: str
    regions: list[str]
    prometheus: str
    settings: list[str]  # what the target sets up for the run (the lab's capacity)
    traffic: str
    warmup: float
    steady_state: list[tuple[str, str, str]]  # name, promql, expect
    faults: list[PlannedFault]
    abort: list[tuple[str, str, str, float]]  # name, promql, expect, for
    slos: list[tuple[str, str, str]]  # name, objective, how it is measured
    recovery: str
    estimated_seconds: float
    notes: list[str] = field(default_factory=list)


def _slo_line(slo: SLO, spec: GameDaySpec) -> tuple[str, str, str]:
    if isinstance(slo, FailoverTimeSLO):
        how = (
            f"from {slo.fault or 'the first fault'} in place until success ratio >= "
            f"{slo.threshold:g} for {format_duration(slo.sustain)} "
            f"(source {slo.source}{': ' + slo.promql if slo.promql else ''})"
        )
        return slo.name, f"<= {format_duration(slo.max)}", how
    if isinstance(slo, ReplicationLagSLO):
        how = f"peak of {slo.promql or 'the target default lag query'} during the faults"
        if slo.recover_within is not None:
            how += f"; back under max within {format_duration(slo.recover_within)} of revert"
        if slo.canary:
            how += "; plus canary writes across regions"
            if not canary_applies(spec):
                how += " (skipped: they need the kv probe)"
        return slo.name, f"<= {format_duration(slo.max)}", how
    if isinstance(slo, LostWritesSLO):
        return slo.name, f"<= {slo.max}", "read every acknowledged write back from every region"
    if isinstance(slo, ErrorRateSLO | LatencySLO):
        return slo.name, slo_objective(slo)[0], _windowed_how(slo, spec)
    assert isinstance(slo, PromQLSLO)
    return slo.name, str(slo.objective), f"{slo.aggregate} of {slo.promql} over the run"


def _windowed_how(slo: ErrorRateSLO | LatencySLO, spec: GameDaySpec) -> str:
    """How an error rate or a latency percentile is measured, and over which requests."""
    if isinstance(slo, ErrorRateSLO):
        return f"failed/total requests sent in the window (source {slo.source})"
    who = []
    if slo.homes:
        who.append(f"clients of {', '.join(slo.homes)}")
    if slo.regions:
        who.append(f"served by {', '.join(slo.regions)}")
    failures = "failures excluded" if slo.failures == "exclude" else "failures count as slowest"
    scope = "per serving region" if slo.per_region else "overall"
    of = f" of {' and '.join(who)}" if who else ""
    how = f"p{slo.percentile:g} of the probe's latency, {scope}{of}, {failures}"
    if slo.window == "faults":
        how += "; compared with the warm-up before the faults"
    return how + f"; needs ~{needed_samples(slo.quantile)} requests to bound it"


def _traffic_line(spec: GameDaySpec) -> str:
    """The probe, the load profile of every home (t from the start of traffic) and the
    run's traffic settings."""
    t = spec.traffic
    plan = load_plan(t, list(spec.target.regions))
    if isinstance(t.probe, HttpProbe):
        p = t.probe
        where = p.via or ("entry" if p.url or spec.target.url else "entry or regions")
        probe = f"http probe {p.method} {p.path} via {where}"
        if p.region_header:
            probe += f", serving region from {p.region_header}"
    else:
        probe = f"kv probe, {t.write_ratio:.0%} writes over {t.keys} keys"
    return (
        f"open loop, peak {plan.peak_rate:g} req/s; {'; '.join(plan.describe())}; {probe}; "
        f"timeout {format_duration(t.timeout)}, duration "
        f"{t.duration if t.duration == 'auto' else format_duration(t.duration)}"
    )


def build_plan(
    gameday: GameDay, options: TargetOptions | None = None, target: Target | None = None
) -> Plan:
    spec = gameday.spec
    target = target or target_for(spec.target, options or TargetOptions())
    target.check(list(spec.faults))
    faults = [
        PlannedFault(f.name, f.type, f.after, f.after + f.duration, f.ttl, target.plan(f))
        for f in sorted(spec.faults, key=lambda f: f.after)
    ]
    t = spec.traffic
    if uses_prometheus(spec):
        prometheus = spec.prometheus.url or f"supplied by the {spec.target.kind} target"
    else:
        prometheus = "not used"
    until_recovery = t.warmup + spec.fault_span()
    recovery = recovery_wait(spec, elapsed=until_recovery)
    estimate = until_recovery + recovery
    notes = []
    if spec.schedule:
        notes.append(f"schedule {spec.schedule!r} ({spec.time_zone}) applies to the operator only")
    return Plan(
        gameday=gameday.name,
        target_kind=spec.target.kind,
        regions=list(spec.target.regions),
        prometheus=prometheus,
        settings=target.settings(),
        traffic=_traffic_line(spec),
        warmup=t.warmup,
        steady_state=[(c.name, c.promql, str(c.expect)) for c in spec.steady_state],
        faults=faults,
        abort=[(a.name, a.promql, str(a.expect), a.for_) for a in spec.abort],
        slos=[_slo_line(s, spec) for s in spec.slos],
        recovery=f"settle {format_duration(recovery)}, convergence up to "
        f"{format_duration(spec.recovery.convergence_timeout)}",
        estimated_seconds=estimate,
        notes=notes,
    )
