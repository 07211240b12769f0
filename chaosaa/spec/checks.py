"""Cross-field rules of a GameDay that a single field cannot express.

Each problem is returned as ``(path, reason)`` so the loader can name the field and line.
"""

from __future__ import annotations

from chaosaa.spec.model import (
    ErrorRateSLO,
    FailoverTimeSLO,
    GameDaySpec,
    HttpProbe,
    LostWritesSLO,
    PromQLSLO,
    ReplicationLagSLO,
)

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

    fault_names = [f.name for f in spec.faults]
    for i, slo in enumerate(spec.slos):
        if isinstance(slo, FailoverTimeSLO):
            if not spec.faults:
                problems.append((("spec", "slos", i), "failoverTime needs at least one fault"))
            elif slo.fault is not None and slo.fault not in fault_names:
                problems.append(
                    (
                        ("spec", "slos", i, "fault"),
                        f"no fault named {slo.fault!r} (faults: {', '.join(fault_names)})",
                    )
                )
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
