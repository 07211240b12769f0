"""Verdicts: the one place that decides what passed, and the exit code (DESIGN.md section 3).

An SLO is judged against its objective and a steady-state check against its expectation
(no data, NaN or a failed query is never a pass); a run is judged by how it ended and by
those results; its exit code and the verdict ``report.json`` gives it come from one table.
:mod:`chaosaa.report` only records and renders what is decided here.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from typing import Any

from chaosaa.durations import format_duration
from chaosaa.errors import ChaosaaError, ExitCode
from chaosaa.report.codec import plain
from chaosaa.report.model import (
    RunReport,
    RunVerdict,
    SLOResult,
    SLOVerdict,
    SourceResult,
    SteadyStateResult,
)
from chaosaa.spec.model import (
    SLO,
    ErrorRateSLO,
    FailoverTimeSLO,
    LatencySLO,
    LostWritesSLO,
    PromQLSLO,
    ReplicationLagSLO,
    SteadyStateCheck,
)
from chaosaa.spec.types import Expectation

# --------------------------------------------------------------------------- the run

#: the exit code of ``chaosaa run`` -> the run's verdict in report.json and in a
#: GameDayRun's status. An exception that stops a run carries its code (``errors``).
VERDICTS: dict[ExitCode, RunVerdict] = {
    ExitCode.PASSED: "passed",
    ExitCode.SLO_FAILED: "failed",
    ExitCode.INVALID: "error",
    ExitCode.ABORTED: "aborted",
    ExitCode.ENVIRONMENT: "error",
}


def stop_code(exc: BaseException) -> ExitCode:
    """The exit code of a run that ``exc`` stopped: the error's own; a cancellation
    (SIGINT, SIGTERM, a deleted GameDayRun) aborts; anything else is an environment error."""
    if isinstance(exc, ChaosaaError):
        return exc.exit_code
    if isinstance(exc, asyncio.CancelledError):
        return ExitCode.ABORTED
    return ExitCode.ENVIRONMENT


def run_exit_code(
    stopped: ExitCode | None,
    slos: Iterable[SLOResult],
    steady_after: Iterable[SteadyStateResult],
) -> ExitCode:
    """A run stopped early exits with the code of what stopped it. A run that went to
    the end fails if an SLO fails it (``unknown`` counts unless ``onNoData: ignore``; so
    does an SLO it never evaluated) or a steady-state check after recovery failed."""
    if stopped is not None:
        return stopped
    if any(slo.fails_run for slo in slos):
        return ExitCode.SLO_FAILED
    if any(check.evaluated and not check.passed for check in steady_after):
        return ExitCode.SLO_FAILED
    return ExitCode.PASSED


def finish(
    report: RunReport,
    *,
    finished_at: float,
    stopped: ExitCode | None = None,
    reason: str | None = None,
) -> None:
    """Close the report with its verdict and exit code (``stopped``: see :func:`run_exit_code`)."""
    code = run_exit_code(stopped, report.slos, report.steady_state.after)
    report.finished_at = finished_at
    report.verdict = VERDICTS[code]
    report.exit_code = int(code)
    if reason is not None:
        report.reason = reason


# --------------------------------------------------------------------------- SLOs


def slo_objective(slo: SLO) -> tuple[str, str]:
    """The objective as text and the unit of the measured value."""
    if isinstance(slo, FailoverTimeSLO):
        return f"<= {format_duration(slo.max)}", "s"
    if isinstance(slo, ReplicationLagSLO):
        objective = f"<= {format_duration(slo.max)}"
        if slo.recover_within is not None:
            objective += f", back under it within {format_duration(slo.recover_within)}"
        return objective, "s"
    if isinstance(slo, LostWritesSLO):
        return f"<= {slo.max}", "writes"
    if isinstance(slo, ErrorRateSLO):
        return f"<= {slo.max:g}{window_text(slo)}", "ratio"
    if isinstance(slo, LatencySLO):
        where = " in every region" if slo.per_region else ""
        bound = format_duration(slo.max)
        return f"p{slo.percentile:g} <= {bound}{where}{window_text(slo)}", "s"
    return str(slo.objective), ""


def window_text(slo: ErrorRateSLO | LatencySLO) -> str:
    """The window an objective holds in, as it reads after the objective; empty for the
    whole run of an error rate (what it always meant)."""
    if slo.window == "run":
        return " over the run" if isinstance(slo, LatencySLO) else ""
    text = f" during {slo.fault}" if slo.fault else " during the faults"
    if slo.settle:
        text += f" from {format_duration(slo.settle)} in"
    return text


def _default_source(slo: SLO) -> str:
    if isinstance(slo, FailoverTimeSLO | ErrorRateSLO):
        return slo.source
    if isinstance(slo, LostWritesSLO):
        return "readback"
    if isinstance(slo, LatencySLO):
        return "probe"
    return "prometheus"


def objective_holds(slo: SLO, measured: float) -> bool:
    """The plain comparison of ``measured`` against the SLO's bound."""
    if isinstance(slo, PromQLSLO):
        return slo.objective.holds(measured)
    return Expectation("<=", float(slo.max)).holds(measured)


def slo_result(
    slo: SLO,
    measured: float | None,
    *,
    passed: bool | None = None,
    source: str | None = None,
    error_bound_seconds: float | None = None,
    details: dict[str, Any] | None = None,
) -> SLOResult:
    """The result of one evaluated SLO.

    ``measured`` of ``None`` or NaN gives ``unknown``, whatever ``passed`` says: no data
    is never a pass. ``passed`` defaults to comparing ``measured`` with the SLO's bound;
    pass it explicitly for compound objectives (e.g. replication lag's ``recoverWithin``).
    """
    objective, unit = slo_objective(slo)
    verdict: SLOVerdict
    if measured is None or not math.isfinite(measured):
        measured, verdict = None, "unknown"
    else:
        ok = objective_holds(slo, measured) if passed is None else passed
        verdict = "passed" if ok else "failed"
    return SLOResult(
        name=slo.name,
        type=slo.type,
        objective=objective,
        measured=measured,
        unit=unit,
        verdict=verdict,
        source=source if source is not None else _default_source(slo),
        error_bound_seconds=error_bound_seconds,
        details=plain(details or {}),
        on_no_data=slo.on_no_data,
    )


def combine_sources(slo: SLO, results: list[SLOResult]) -> SLOResult:
    """One SLO measured from several sources: the first source's figure, every source side
    by side, and a verdict that needs every source: failed if one failed, unknown if one
    had no data (no data is never a pass), else passed."""
    if len(results) == 1:
        return results[0]
    verdicts = {r.verdict for r in results}
    combined: SLOVerdict = (
        "failed" if "failed" in verdicts else "unknown" if "unknown" in verdicts else "passed"
    )
    first = results[0]
    first.verdict = combined
    first.sources = [
        SourceResult(
            source=r.source or "",
            measured=r.measured,
            verdict=r.verdict,
            error_bound_seconds=r.error_bound_seconds,
            details=r.details,
        )
        for r in results
    ]
    return first


def slo_not_evaluated(slo: SLO, reason: str) -> SLOResult:
    """An SLO the run never got to measure (aborted, error): ``unknown``, not evaluated."""
    result = slo_result(slo, None, details={"reason": reason})
    result.evaluated = False
    return result


# --------------------------------------------------------------------------- steady state


def steady_state_result(
    check: SteadyStateCheck,
    value: float | None,
    *,
    at: float | None = None,
    error: str | None = None,
) -> SteadyStateResult:
    """One steady-state check; no value (or NaN) fails it."""
    finite = value is not None and math.isfinite(value)
    return SteadyStateResult(
        name=check.name,
        value=value if finite else None,
        passed=bool(finite and value is not None and check.expect.holds(value)),
        expect=str(check.expect),
        promql=check.promql,
        at=at,
        error=error if error is not None or finite else "no data",
    )


def steady_state_not_evaluated(check: SteadyStateCheck, reason: str) -> SteadyStateResult:
    """A check the run stopped before: failed, not evaluated (it does not fail the run)."""
    return SteadyStateResult(
        name=check.name,
        value=None,
        passed=False,
        expect=str(check.expect),
        promql=check.promql,
        error=reason,
        evaluated=False,
    )
