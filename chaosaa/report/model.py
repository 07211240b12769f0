"""The run report (DESIGN.md section 3): what ``report.json`` holds, as typed dataclasses.

Instants are unix seconds (floats) in Python, like everything in :mod:`chaosaa.model`, and
ISO-8601 UTC strings with milliseconds and ``Z`` in JSON. The JSON alone is enough to
re-render every other artefact (``chaosaa report RUN.json``).

This module records; it decides nothing. The engine builds a report during a run
(:mod:`chaosaa.engine.reporting`) and judges it (:mod:`chaosaa.engine.verdict`)::

    report = new_report(gameday, started_at=time.time(), run_id=run_id)
    report.event(now, "fault.effective", fault="eu-dark")
    report.record_slo(slo_result(slo, measured=4.21, source="probe", error_bound_seconds=0.02))
    finish(report, finished_at=time.time())          # verdict and exit code
    write_reports(report, report_dir)                # chaosaa.report.write
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from chaosaa.errors import InvalidInputError
from chaosaa.report.codec import DecodeError, from_dict, instant, to_dict
from chaosaa.report.fmt import below_resolution

SCHEMA_VERSION = 1

RunVerdict = Literal["passed", "failed", "aborted", "error"]
SLOVerdict = Literal["passed", "failed", "unknown"]


class ReportFileError(InvalidInputError):
    """A file given as a run report is missing, not JSON, or not a report we can read."""


# --------------------------------------------------------------------------- parts


@dataclass(kw_only=True, slots=True)
class TargetInfo:
    kind: str
    regions: list[str] = field(default_factory=list)


@dataclass(kw_only=True, slots=True)
class FaultResult:
    """One fault of the run. ``effective_at`` is ``None`` if it was never in place."""

    name: str
    type: str
    requested_at: float | None = instant(default=None)
    effective_at: float | None = instant(default=None)
    reverted_at: float | None = instant(default=None)
    time_to_effect_seconds: float | None = None
    time_to_revert_seconds: float | None = None
    # beyond the fixed fields
    revert_requested_at: float | None = instant(default=None)
    scope: str = ""  # what it cuts, e.g. "regions eu" or "links us->eu"
    error: str | None = None  # why it could not be injected, verified or reverted
    #: writes sent while it was in place, per region: by the traffic probe (attributed to
    #: the serving region, else the home region) and by the datastore canaries
    probe_writes: dict[str, WriteCount] = field(default_factory=dict)
    canary_writes: dict[str, WriteCount] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class WriteCount:
    attempted: int = 0
    accepted: int = 0


@dataclass(kw_only=True, slots=True)
class SteadyStateResult:
    """One steady-state check, before injection or after recovery."""

    name: str
    value: float | None
    passed: bool
    expect: str
    # beyond the fixed fields
    promql: str | None = None
    at: float | None = instant(default=None)
    error: str | None = None  # the query failed / returned no data
    evaluated: bool = True  # False: the run stopped before this check


@dataclass(kw_only=True, slots=True)
class SteadyState:
    before: list[SteadyStateResult] = field(default_factory=list)
    after: list[SteadyStateResult] = field(default_factory=list)


@dataclass(kw_only=True, slots=True)
class SourceResult:
    """One source's figure for an SLO measured from several sources, side by side."""

    source: str
    measured: float | None
    verdict: SLOVerdict
    error_bound_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class SLOResult:
    """One SLO verdict with the number behind it, where that number came from and how
    precise it is. ``unknown`` (no data, NaN, a failed query) is never a pass."""

    name: str
    type: str
    objective: str  # "<= 30s"
    measured: float | None
    unit: str  # "s" | "ratio" | "writes" | "" (promql)
    verdict: SLOVerdict
    source: str | None = None  # "probe" | "prometheus" | "readback" | "canary"
    error_bound_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # beyond the fixed fields
    on_no_data: Literal["fail", "ignore"] = "fail"
    evaluated: bool = True  # False: the run stopped before the SLO could be measured
    #: every source's figure when the SLO was measured from more than one (the first is
    #: the one above)
    sources: list[SourceResult] = field(default_factory=list)

    @property
    def below_resolution(self) -> bool:
        return below_resolution(self.measured, self.unit, self.error_bound_seconds)

    @property
    def fails_run(self) -> bool:
        """Failed, or unknown without ``onNoData: ignore``. An SLO a completed run never
        evaluated counts too: a forgotten measurement must not read as a pass. The run's
        verdict (:func:`chaosaa.engine.verdict.run_exit_code`) and the renderers of a
        stored report read an SLO result this one way."""
        if self.verdict == "failed":
            return True
        return self.verdict == "unknown" and self.on_no_data == "fail"


@dataclass(kw_only=True, slots=True)
class RegionTraffic:
    requests: int = 0
    errors: int = 0


@dataclass(kw_only=True, slots=True)
class Traffic:
    requests: int = 0
    errors: int = 0
    by_region: dict[str, RegionTraffic] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class CanaryIntegrity:
    """A datastore's canaries read back from every region after the convergence timeout."""

    datastore: str
    acknowledged: int = 0
    lost: int = 0
    divergent: int = 0
    #: seconds verification waited until every canary was everywhere (None: it never was)
    converged_after_seconds: float | None = None
    checked: bool = False
    lost_canaries: list[str] = field(default_factory=list)  # a sample: origin/seq
    unreadable_regions: dict[str, str] = field(default_factory=dict)
    #: canary writes a region refused or did not answer, over the run
    write_errors: dict[str, int] = field(default_factory=dict)
    #: per link: peak canary lag, its resolution and how many canaries it saw
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None


@dataclass(kw_only=True, slots=True)
class DataIntegrity:
    acknowledged_writes: int = 0
    lost: int = 0
    divergent_keys: int = 0
    conflicts: int = 0
    # beyond the fixed fields
    checked: bool = False  # True once acknowledged writes were read back
    lost_keys: list[str] = field(default_factory=list)  # a sample, for debugging
    canaries: list[CanaryIntegrity] = field(default_factory=list)


@dataclass(kw_only=True, slots=True)
class TimelineEvent:
    at: float = instant()
    event: str  # "phase.inject", "fault.effective", "abort", ...
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class ChartWindow:
    """A shaded fault window: from in place (or requested) until reverted."""

    name: str
    type: str = ""
    start: float = instant()
    end: float | None = instant(default=None)  # None: never reverted (runner died)


@dataclass(kw_only=True, slots=True)
class ChartMarker:
    """A vertical line: the instant the service recovered, per failoverTime SLO."""

    name: str
    at: float = instant()
    label: str = ""


@dataclass(kw_only=True, slots=True)
class Chart:
    """Timeline chart data. Points are ``[unix seconds, value]`` pairs."""

    success_ratio: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    replication_lag: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    fault_windows: list[ChartWindow] = field(default_factory=list)
    failover_markers: list[ChartMarker] = field(default_factory=list)
    bucket_seconds: float = 1.0  # width of a success-ratio window
    #: per link (``us->eu``, prefixed by the datastore when there are several): canary lag
    canary_lag: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: per region: the share (%) of the canary writes sent in each second that were refused
    #: or unanswered
    canary_write_errors: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: per region: 1 while its database accepts writes (e.g. Galera's wsrep_ready)
    region_ready: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (
            any(self.success_ratio.values())
            or any(self.replication_lag.values())
            or any(self.canary_lag.values())
            or self.fault_windows
            or self.failover_markers
        )


# --------------------------------------------------------------------------- report


@dataclass(kw_only=True, slots=True)
class RunReport:
    schema_version: int = SCHEMA_VERSION
    gameday: str
    verdict: RunVerdict
    exit_code: int
    started_at: float = instant()
    finished_at: float = instant()
    target: TargetInfo
    faults: list[FaultResult] = field(default_factory=list)
    steady_state: SteadyState = field(default_factory=SteadyState)
    slos: list[SLOResult] = field(default_factory=list)
    traffic: Traffic = field(default_factory=Traffic)
    data_integrity: DataIntegrity = field(default_factory=DataIntegrity)
    timeline: list[TimelineEvent] = field(default_factory=list)
    # beyond the fixed fields
    run_id: str | None = None
    description: str = ""
    reason: str | None = None  # why the run was aborted or ended in error
    chart: Chart = field(default_factory=Chart)
    #: what the run showed, in plain words (e.g. "No region accepted writes while ...")
    findings: list[str] = field(default_factory=list)

    # -- recording during a run ------------------------------------------------------

    def event(self, at: float, event: str, **detail: Any) -> None:
        """Append a timeline event, e.g. ``report.event(t, "fault.effective", fault="eu")``."""
        self.timeline.append(TimelineEvent(at=at, event=event, detail=dict(detail)))

    def record_fault(self, result: FaultResult) -> None:
        """Replace the fault of the same name (keeping its scope if the new one has none)."""
        for i, old in enumerate(self.faults):
            if old.name == result.name:
                result.scope = result.scope or old.scope
                self.faults[i] = result
                return
        self.faults.append(result)

    def record_slo(self, result: SLOResult) -> None:
        """Replace the SLO of the same name, or append it."""
        for i, old in enumerate(self.slos):
            if old.name == result.name:
                self.slos[i] = result
                return
        self.slos.append(result)

    # -- reading ---------------------------------------------------------------------

    @property
    def duration_seconds(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "<report>") -> RunReport:
        """Parse ``report.json``; raise :class:`ReportFileError` naming ``source``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ReportFileError(f"{source}: not JSON ({e})") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<report>") -> RunReport:
        if not isinstance(data, dict) or "schemaVersion" not in data:
            raise ReportFileError(
                f"{source}: not a chaosaa run report (no schemaVersion field); "
                "give the report.json that `chaosaa run` wrote"
            )
        version = data["schemaVersion"]
        if version != SCHEMA_VERSION:
            raise ReportFileError(
                f"{source}: schemaVersion {version!r} is not supported; "
                f"this chaosaa reads schemaVersion {SCHEMA_VERSION}"
            )
        try:
            return from_dict(cls, data)
        except DecodeError as e:
            raise ReportFileError(f"{source}: {e}") from None


def load_report(path: Path) -> RunReport:
    """Read a stored ``report.json``; every failure is a :class:`ReportFileError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ReportFileError(f"{path}: is a directory; give the report.json inside it") from None
    except UnicodeDecodeError:
        raise ReportFileError(f"{path}: not a text file (not UTF-8)") from None
    except OSError as e:
        raise ReportFileError(f"{path}: cannot read ({e.strerror})") from None
    return RunReport.from_json(text, source=str(path))
