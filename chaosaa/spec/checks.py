"""Cross-field rules of a GameDay that a single field cannot express.

Each problem is returned as ``(path, reason)`` so the loader can name the field and line.
"""

from __future__ import annotations

from chaosaa.durations import format_duration
from chaosaa.spec.model import (
    ErrorRateSLO,
    FailoverTimeSLO,
    GameDaySpec,
    LatencySLO,
    LostWritesSLO,
    PromQLSLO,
    ReplicationLagSLO,
)
from chaosaa.spec.traffic import HttpProbe, KvProbe

Problem = tuple[tuple[str | int, ...], str]


def _unique_names(kind: str, names: list[str]) -> list[Problem]:
    seen: set[str] = set()
    out: list[Problem] = []
    for i, name in enumerate(names):
        if name in seen:
            out.append((("spec", kind, i, "name"), f"duplicate name {name!r}"))
        seen.add(name)
    return out


def uses_prometheus(spec: GameDaySpec) -> bool:
    return bool(spec.steady_state or spec.abort) or any(_slo_uses_prometheus(s) for s in spec.slos)


def canary_applies(spec: GameDaySpec) -> bool:
    """Canary lag writes and polls markers with the demo's KV protocol: only a GameDay whose
    probe speaks it (the kv probe) may assume its regions' endpoints do."""
    return isinstance(spec.traffic.probe, KvProbe)


def _slo_uses_prometheus(slo: object) -> bool:
    if isinstance(slo, PromQLSLO):
        return True
    if isinstance(slo, ReplicationLagSLO):
        return slo.source != "canary"
    if isinstance(slo, FailoverTimeSLO):
        return slo.source in ("prometheus", "both")
    return isinstance(slo, ErrorRateSLO) and slo.source == "prometheus"


def semantic_problems(spec: GameDaySpec) -> list[Problem]:
    problems: list[Problem] = []
    problems += _unique_names("faults", [f.name for f in spec.faults])
    problems += _unique_names("slos", [s.name for s in spec.slos])
    problems += _unique_names("steadyState", [c.name for c in spec.steady_state])
    problems += _unique_names("abort", [a.name for a in spec.abort])
    problems += _unique_names("datastores", [d.name for d in spec.datastores])

    known = set(spec.target.regions)
    listed = ", ".join(sorted(known))
    for i, fault in enumerate(spec.faults):
        unknown = fault.referenced_regions() - known
        if unknown:
            problems.append(
                (
                    ("spec", "faults", i),
                    f"region(s) {', '.join(sorted(unknown))} not in target.regions ({listed})",
                )
            )
    problems += _traffic_problems(spec, known)
    problems += [
        (
            ("spec", "datastores", i, "regions", region),
            f"region {region!r} not in target.regions ({listed})",
        )
        for i, ds in enumerate(spec.datastores)
        for region in ds.regions
        if region not in known
    ]

    for i, slo in enumerate(spec.slos):
        if isinstance(slo, FailoverTimeSLO):
            problems += _fault_reference(spec, i, "failoverTime", slo.fault)
        if isinstance(slo, ErrorRateSLO | LatencySLO):
            problems += _window_problems(spec, i, slo)
            problems += _scope_problems(i, slo, known)
        if isinstance(slo, LatencySLO):
            problems += _latency_problems(spec, i, slo, known)
        if (
            spec.target.kind != "lab"
            and _slo_uses_prometheus(slo)
            and not getattr(slo, "promql", None)
        ):
            problems.append(
                (
                    ("spec", "slos", i, "promql"),
                    f"required for target kind {spec.target.kind} "
                    "(only the lab supplies default queries)",
                )
            )
    if spec.target.kind != "lab" and uses_prometheus(spec) and not spec.prometheus.url:
        problems.append(
            (
                ("spec", "prometheus", "url"),
                f"required for target kind {spec.target.kind} when steady state, abort rules "
                "or Prometheus-based SLOs are used",
            )
        )
    if spec.traffic.duration != "auto":
        needed = spec.traffic.warmup + spec.fault_span()
        if spec.traffic.duration < needed:
            problems.append(
                (
                    ("spec", "traffic", "duration"),
                    f"{spec.traffic.duration:g}s is shorter than warmup + faults ({needed:g}s); "
                    "use 'auto' or a longer duration",
                )
            )
    return problems


def _fault_reference(spec: GameDaySpec, i: int, what: str, fault: str | None) -> list[Problem]:
    """An SLO measured from a fault needs one, and a named fault must exist."""
    if not spec.faults:
        return [(("spec", "slos", i), f"{what} needs at least one fault")]
    names = [f.name for f in spec.faults]
    if fault is not None and fault not in names:
        return [
            (("spec", "slos", i, "fault"), f"no fault named {fault!r} (faults: {', '.join(names)})")
        ]
    return []


def _window_problems(spec: GameDaySpec, i: int, slo: ErrorRateSLO | LatencySLO) -> list[Problem]:
    """A window over the faults needs a fault, and must not settle past its end."""
    if slo.window != "faults":
        return []
    problems = _fault_reference(
        spec, i, f"{slo.type} over window faults (or window: run)", slo.fault
    )
    if problems or slo.settle <= 0:
        return problems
    faults = [f for f in spec.faults if slo.fault in (None, f.name)]
    start = min(f.after for f in faults)
    length = max(f.after + f.duration for f in faults) - start
    if slo.settle >= length:
        problems.append(
            (
                ("spec", "slos", i, "settle"),
                f"{format_duration(slo.settle)} leaves nothing of the "
                f"{format_duration(length)} the fault window lasts",
            )
        )
    return problems


def _scope_problems(i: int, slo: ErrorRateSLO | LatencySLO, known: set[str]) -> list[Problem]:
    """The regions and homes that scope a windowed SLO are target regions."""
    listed = ", ".join(sorted(known))
    return [
        (("spec", "slos", i, field, j), f"region {region!r} not in target.regions ({listed})")
        for field, regions in (("regions", slo.regions), ("homes", slo.homes))
        for j, region in enumerate(regions)
        if region not in known
    ]


def _latency_problems(spec: GameDaySpec, i: int, slo: LatencySLO, known: set[str]) -> list[Problem]:
    """The objective is below the request timeout (a request slower than the timeout is a
    failure, never a latency)."""
    problems: list[Problem] = []
    timeout = spec.traffic.timeout
    if slo.max >= timeout:
        problems.append(
            (
                ("spec", "slos", i, "max"),
                f"{format_duration(slo.max)} is not below the request timeout "
                f"(spec.traffic.timeout {format_duration(timeout)}): a slower request fails, "
                "it never measures that long",
            )
        )
    return problems


def _traffic_problems(spec: GameDaySpec, known: set[str]) -> list[Problem]:
    """Homes, per-region loads and probe endpoints name target regions; an http probe,
    which never writes, cannot feed a lostWrites SLO."""
    traffic = spec.traffic
    listed = ", ".join(sorted(known))
    named: list[tuple[tuple[str | int, ...], str]] = [
        (("spec", "traffic", "homes", i), region) for i, region in enumerate(traffic.homes)
    ]
    named += [(("spec", "traffic", "load", region), region) for region in traffic.load]
    if isinstance(traffic.probe, HttpProbe):
        named += [
            (("spec", "traffic", "probe", "endpoints", region), region)
            for region in traffic.probe.endpoints
        ]
    problems: list[Problem] = [
        (path, f"region {region!r} not in target.regions ({listed})")
        for path, region in named
        if region not in known
    ]
    if isinstance(traffic.probe, HttpProbe):
        problems += [
            (
                ("spec", "slos", i),
                "lostWrites needs the kv probe: an http probe (spec.traffic.probe) never writes",
            )
            for i, slo in enumerate(spec.slos)
            if isinstance(slo, LostWritesSLO)
        ]
    return problems
