"""GameDayRun objects without I/O: manifests, validation, status from a report, history.

Shared by the operator and by ``chaosaa gameday trigger``, so that a run made by hand is
exactly what the scheduler would have made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from chaosaa.errors import SpecError
from chaosaa.report.model import RunReport
from chaosaa.spec.crd import GROUP, VERSION
from chaosaa.spec.loader import validate_gameday
from chaosaa.spec.model import API_VERSION, GameDay
from chaosaa.spec.status import (
    TERMINAL_PHASES,
    CheckStatus,
    FaultStatus,
    GameDayRunStatus,
    RunSummary,
    SLOStatus,
    SteadyStateStatus,
)

API = f"{GROUP}/{VERSION}"
GAMEDAYS = "gamedays"
GAMEDAYRUNS = "gamedayruns"

#: label on every run: the GameDay it belongs to
LABEL_GAMEDAY = f"{GROUP}/gameday"
#: label on every run: schedule | manual
LABEL_TRIGGER = f"{GROUP}/trigger"
#: on every run from its creation: deleting it waits until the operator reverted its faults
#: (kopf adds it too, but a run created with it costs one patch less in a burst)
FINALIZER = f"{GROUP}/finalizer"
#: annotation on a GameDay: set it to a new value to start a run now
ANNOTATION_TRIGGER = f"{GROUP}/trigger"

#: verdict of the report -> phase of the run
PHASES = {
    "passed": "Succeeded",
    "failed": "Failed",
    "aborted": "Aborted",
    "error": "Error",
    "interrupted": "Interrupted",
}
#: phases that count against failedRunsHistoryLimit (everything finished but Succeeded)
FAILED_PHASES = TERMINAL_PHASES - {"Succeeded"}


def rfc3339(instant: float) -> str:
    """``2026-11-26T10:00:00Z`` (whole seconds, as Kubernetes writes times)."""
    return datetime.fromtimestamp(math.floor(instant), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_ms(instant: float) -> str:
    """With milliseconds, for measured instants (fault effective, reverted)."""
    return (
        datetime.fromtimestamp(instant, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return str(meta.get("namespace") or ""), str(meta["name"])


# --------------------------------------------------------------------------- GameDays


def gameday_document(name: str, namespace: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The CLI's file format for a GameDay object (only what the models know)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "GameDay",
        "metadata": {"name": name, "namespace": namespace},
        "spec": dict(spec),
    }


def validate(name: str, namespace: str, spec: Mapping[str, Any]) -> GameDay:
    """Validate a GameDay's spec with the CLI's rules plus the operator's own; raise
    SpecError with every problem as ``NAMESPACE/NAME: FIELD: REASON``."""
    source = f"{namespace}/{name}"
    gameday = validate_gameday(gameday_document(name, namespace, spec), source)
    problems = [
        f"{source}: spec.target.regions.{region}.kubeconfigSecret.namespace: the Secret must "
        f"be in the GameDay's namespace ({namespace}), not {ref.namespace}"
        for region, target in gameday.spec.target.regions.items()
        if (ref := target.kubeconfig_secret) is not None and ref.namespace not in (None, namespace)
    ]
    if problems:
        raise SpecError(problems)
    return gameday


def validate_object(obj: Mapping[str, Any]) -> GameDay:
    namespace, name = key(obj)
    return validate(name, namespace, obj.get("spec") or {})


# --------------------------------------------------------------------------- runs


def run_manifest(
    gameday: Mapping[str, Any],
    *,
    name: str,
    trigger: str,
    scheduled: float | None = None,
) -> dict[str, Any]:
    """A GameDayRun for ``gameday`` (the custom object), owned by it, with its spec frozen."""
    meta = gameday["metadata"]
    spec: dict[str, Any] = {
        "gameDay": meta["name"],
        "trigger": trigger,
        "gameDaySpec": dict(gameday.get("spec") or {}),
    }
    if scheduled is not None:
        spec["scheduledTime"] = rfc3339(scheduled)
    return {
        "apiVersion": API,
        "kind": "GameDayRun",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "labels": {LABEL_GAMEDAY: meta["name"], LABEL_TRIGGER: trigger},
            "finalizers": [FINALIZER],
            "ownerReferences": [
                {
                    "apiVersion": API,
                    "kind": "GameDay",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": spec,
    }


def run_gameday(run: Mapping[str, Any]) -> GameDay:
    """The GameDay a run executes: its frozen spec, validated again (raises SpecError)."""
    namespace, _ = key(run)
    spec = run.get("spec") or {}
    return validate(str(spec.get("gameDay", "")), namespace, spec.get("gameDaySpec") or {})


def phase_of(run: Mapping[str, Any]) -> str | None:
    phase = (run.get("status") or {}).get("phase")
    return str(phase) if phase else None


def is_active(run: Mapping[str, Any]) -> bool:
    return phase_of(run) not in TERMINAL_PHASES


# --------------------------------------------------------------------------- status


def _instant(value: float | None) -> str | None:
    return rfc3339_ms(value) if value is not None and math.isfinite(value) else None


def _number(value: float | None) -> float | None:
    return round(value, 6) if value is not None and math.isfinite(value) else None


def headline(report: RunReport) -> tuple[float | None, float | None]:
    """(failover seconds, peak replication lag seconds) as the report measured them."""
    failover = next(
        (s.measured for s in report.slos if s.type == "failoverTime" and s.measured is not None),
        None,
    )
    lags = [
        s.measured for s in report.slos if s.type == "replicationLag" and s.measured is not None
    ]
    return _number(failover), _number(max(lags) if lags else None)


def status_from_report(report: RunReport) -> GameDayRunStatus:
    """What a finished run shows in ``status``: verdict, per-fault and per-SLO results, and
    the report in numbers."""
    failover, lag = headline(report)
    verdict = report.verdict
    return GameDayRunStatus(
        phase=PHASES[verdict],
        verdict=verdict,
        exit_code=report.exit_code,
        reason=report.reason,
        finished_at=_instant(report.finished_at),
        failover_seconds=failover,
        peak_lag_seconds=lag,
        faults=[
            FaultStatus(
                name=f.name,
                type=f.type,
                scope=f.scope,
                requested_at=_instant(f.requested_at),
                effective_at=_instant(f.effective_at),
                reverted_at=_instant(f.reverted_at),
                time_to_effect_seconds=_number(f.time_to_effect_seconds),
                time_to_revert_seconds=_number(f.time_to_revert_seconds),
                error=f.error,
            )
            for f in report.faults
        ],
        slos=[
            SLOStatus(
                name=s.name,
                type=s.type,
                objective=s.objective,
                measured=_number(s.measured),
                unit=s.unit,
                verdict=s.verdict,
                source=s.source,
                error_bound_seconds=_number(s.error_bound_seconds),
            )
            for s in report.slos
        ],
        steady_state=SteadyStateStatus(
            before=[_check(c) for c in report.steady_state.before],
            after=[_check(c) for c in report.steady_state.after],
        ),
        summary=RunSummary(
            duration_seconds=_number(report.duration_seconds),
            requests=report.traffic.requests,
            errors=report.traffic.errors,
            acknowledged_writes=report.data_integrity.acknowledged_writes,
            lost_writes=report.data_integrity.lost,
            divergent_keys=report.data_integrity.divergent_keys,
            conflicts=report.data_integrity.conflicts,
        ),
    )


def _check(c: Any) -> CheckStatus:
    return CheckStatus(name=c.name, value=_number(c.value), passed=c.passed, expect=c.expect)


def status_patch(status: GameDayRunStatus, **extra: Any) -> dict[str, Any]:
    """A merge patch for ``status``: the fields set, camelCase."""
    body = status.model_dump(by_alias=True, exclude_none=True, exclude_defaults=False)
    body.update(extra)
    return {"status": body}


# --------------------------------------------------------------------------- history


def runs_to_delete(runs: Sequence[Mapping[str, Any]], successful: int, failed: int) -> list[str]:
    """Names of finished runs beyond the history limits, oldest first. Active runs stay."""

    def created(run: Mapping[str, Any]) -> tuple[str, str]:
        meta = run["metadata"]
        return str(meta.get("creationTimestamp") or ""), str(meta["name"])

    out: list[str] = []
    for phases, limit in (({"Succeeded"}, successful), (FAILED_PHASES, failed)):
        done = sorted((r for r in runs if phase_of(r) in phases), key=created)
        out += [str(r["metadata"]["name"]) for r in done[: max(0, len(done) - limit)]]
    return out
