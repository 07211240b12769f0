"""``junit.xml``: the run as one test suite, one test case per SLO and per steady-state check.

The shape is the common one CI systems read (Ant/Jenkins JUnit XSD): ``testsuites`` >
``testsuite`` (properties, testcases, system-out, system-err) > ``testcase`` with at most
one ``failure``, ``error`` or ``skipped``. Verdict mapping:

- SLO ``failed``: failure stating measured vs objective, source and error bound;
- SLO ``unknown``: failure of type ``unknown`` (no data is never a pass), or skipped when
  the SLO says ``onNoData: ignore``;
- run ``aborted``/``error``: an extra ``run`` test case fails (or errors) with the reason,
  and the SLOs the run never reached are skipped.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime

from chaosaa.report.fmt import (
    by_region,
    format_bound,
    format_instant,
    format_measured,
    format_number,
    format_seconds,
)
from chaosaa.report.model import RunReport, SLOResult, SteadyStateResult

# Characters XML 1.0 cannot carry at all; error messages from the world may hold them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class _Case:
    classname: str
    name: str
    outcome: str  # "passed" | "failure" | "error" | "skipped"
    type: str = ""
    message: str = ""
    text: str = ""


def render_junit(report: RunReport) -> str:
    """The JUnit XML document for a run report."""
    cases = _cases(report)
    counts = {
        "tests": len(cases),
        "failures": sum(c.outcome == "failure" for c in cases),
        "errors": sum(c.outcome == "error" for c in cases),
        "skipped": sum(c.outcome == "skipped" for c in cases),
    }
    seconds = f"{report.duration_seconds:.3f}"
    root = ET.Element(
        "testsuites",
        {"name": "chaosaa", **{k: str(v) for k, v in counts.items()}, "time": seconds},
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": _clean(f"gameday {report.gameday}"),
            **{k: str(v) for k, v in counts.items()},
            "time": seconds,
            "timestamp": datetime.fromtimestamp(report.started_at, tz=UTC).strftime(
                "%Y-%m-%dT%H:%M:%S"
            ),
            "hostname": "localhost",
            "id": "0",
            "package": _clean(f"chaosaa.{report.gameday}"),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in _properties(report):
        ET.SubElement(properties, "property", {"name": name, "value": _clean(value)})
    for case in cases:
        element = ET.SubElement(
            suite,
            "testcase",
            {"classname": _clean(case.classname), "name": _clean(case.name), "time": "0.000"},
        )
        if case.outcome != "passed":
            attrs = {"message": _clean(case.message)}
            if case.type:
                attrs["type"] = case.type
            child = ET.SubElement(element, case.outcome, attrs)
            if case.text:
                child.text = _clean(case.text)
    ET.SubElement(suite, "system-out").text = _clean("\n".join(summary_lines(report)) + "\n")
    ET.SubElement(suite, "system-err").text = ""
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _properties(report: RunReport) -> list[tuple[str, str]]:
    props = [
        ("gameday", report.gameday),
        ("verdict", report.verdict),
        ("exitCode", str(report.exit_code)),
        ("startedAt", format_instant(report.started_at)),
        ("finishedAt", format_instant(report.finished_at)),
        ("target", f"{report.target.kind}: {', '.join(report.target.regions)}"),
    ]
    if report.run_id:
        props.append(("runId", report.run_id))
    if report.reason:
        props.append(("reason", report.reason))
    return props


# --------------------------------------------------------------------------- cases


def _cases(report: RunReport) -> list[_Case]:
    prefix = f"chaosaa.{report.gameday}"
    stopped = report.verdict in ("aborted", "error")
    cases: list[_Case] = []
    for check in report.steady_state.before:
        cases.append(_check_case(f"{prefix}.steadyState.before", "before", check))
    if report.verdict == "aborted":
        cases.append(_run_case(f"{prefix}.run", "run aborted", "failure", "run aborted", report))
    elif report.verdict == "error":
        cases.append(_run_case(f"{prefix}.run", "run", "error", "run ended in an error", report))
    for slo in report.slos:
        cases.append(_slo_case(f"{prefix}.slo", slo, stopped=stopped, reason=report.reason))
    for check in report.steady_state.after:
        cases.append(_check_case(f"{prefix}.steadyState.after", "after", check))
    return cases


def _run_case(classname: str, name: str, outcome: str, what: str, report: RunReport) -> _Case:
    """The case for a run that stopped early (``what``: how it stopped, for the message)."""
    return _Case(
        classname,
        name,
        outcome,
        type=report.verdict,
        message=f"{what}: {report.reason or 'no reason recorded'}",
        text="\n".join(summary_lines(report)),
    )


def _slo_case(classname: str, slo: SLOResult, *, stopped: bool, reason: str | None) -> _Case:
    name = f"slo {slo.name} ({slo.type})"
    where = _source_text(slo)
    text = json.dumps(slo.details, indent=2, sort_keys=True) if slo.details else ""
    if not slo.evaluated and stopped:
        because = f": {reason}" if reason else ""
        return _Case(classname, name, "skipped", message=f"not evaluated: the run stopped{because}")
    if slo.verdict == "passed":
        return _Case(classname, name, "passed")
    if slo.verdict == "failed":
        message = (
            f"{slo.name}: measured {format_measured(slo.measured, slo.unit)}, "
            f"objective {slo.objective}{where}{_by_region_text(slo)}"
        )
        return _Case(classname, name, "failure", type="failed", message=message, text=text)
    why = slo.details.get("reason") or slo.details.get("error") or "no data"
    if slo.on_no_data == "ignore":
        return _Case(classname, name, "skipped", message=f"{slo.name}: {why} (onNoData: ignore)")
    message = (
        f"{slo.name}: unknown ({why}), objective {slo.objective}{where}; "
        "no data is never a pass (set onNoData: ignore to accept it)"
    )
    return _Case(classname, name, "failure", type="unknown", message=message, text=text)


def _source_text(slo: SLOResult) -> str:
    parts = []
    if slo.source:
        parts.append(f"source {slo.source}")
    bound = format_bound(slo.error_bound_seconds)
    if bound:
        parts.append(f"error bound {bound}")
    return f" ({', '.join(parts)})" if parts else ""


def _by_region_text(slo: SLOResult) -> str:
    regions = by_region(slo.details)
    return f"; by serving region: {regions}" if regions else ""


def _check_case(classname: str, phase: str, check: SteadyStateResult) -> _Case:
    name = f"steady state {phase}: {check.name}"
    if not check.evaluated:
        return _Case(classname, name, "skipped", message=f"not run: {check.error or 'run stopped'}")
    if check.passed:
        return _Case(classname, name, "passed")
    value = "no data" if check.value is None else format_number(check.value)
    message = f"{check.name} ({phase}): value {value}, expected {check.expect}"
    if check.error:
        message += f" ({check.error})"
    return _Case(
        classname,
        name,
        "failure",
        type="steadyState",
        message=message,
        text=f"promql: {check.promql}" if check.promql else "",
    )


# --------------------------------------------------------------------------- summary


def summary_lines(report: RunReport) -> list[str]:
    """The run in plain text: verdict, SLOs, faults, traffic, data integrity."""
    lines = [
        f"GameDay {report.gameday}: {report.verdict.upper()} (exit code {report.exit_code})",
        f"started {format_instant(report.started_at)}, took "
        f"{format_seconds(report.duration_seconds)}, target {report.target.kind} "
        f"[{', '.join(report.target.regions)}]",
    ]
    if report.reason:
        lines.append(f"reason: {report.reason}")
    for slo in report.slos:
        if not slo.evaluated:
            lines.append(f"slo {slo.name} ({slo.type}): not evaluated, objective {slo.objective}")
            continue
        lines.append(
            f"slo {slo.name} ({slo.type}): {slo.verdict}; measured "
            f"{format_measured(slo.measured, slo.unit)}, objective {slo.objective}"
            f"{_source_text(slo)}{_by_region_text(slo)}"
        )
    for fault in report.faults:
        state = (
            "never in place"
            if fault.effective_at is None
            else f"time to effect {format_seconds(fault.time_to_effect_seconds)}, "
            f"time to revert {format_seconds(fault.time_to_revert_seconds)}"
        )
        lines.append(f"fault {fault.name} ({fault.type}): {state}")
    t = report.traffic
    lines.append(f"traffic: {t.requests} requests, {t.errors} errors")
    d = report.data_integrity
    lines.append(
        f"data integrity: {d.acknowledged_writes} acknowledged writes, {d.lost} lost, "
        f"{d.divergent_keys} divergent keys, {d.conflicts} conflicts"
        + ("" if d.checked else " (not read back)")
    )
    return lines
