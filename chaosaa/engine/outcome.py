"""What one run produced: the single record the report, the CLI and the operator read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chaosaa.engine.canaries import DatastoreCanaries
from chaosaa.engine.faults import FaultRecord
from chaosaa.engine.verdict import run_exit_code
from chaosaa.errors import ExitCode
from chaosaa.model import AckedWrite, Sample, Series
from chaosaa.report.model import SLOResult, SteadyStateResult
from chaosaa.spec.model import GameDay
from chaosaa.targets.base import Endpoints, TargetEvent


@dataclass
class RunOutcome:
    """Everything a run produced; the report is rendered from this alone."""

    gameday: GameDay
    run_id: str
    started_at: float
    finished_at: float = 0.0
    #: None: the run went to the end (its SLOs decide); else the exit code of what stopped
    #: it (:func:`chaosaa.engine.verdict.stop_code`)
    stopped: ExitCode | None = None
    reason: str | None = None
    endpoints: Endpoints | None = None
    faults: list[FaultRecord] = field(default_factory=list)
    steady_before: list[SteadyStateResult] = field(default_factory=list)
    steady_after: list[SteadyStateResult] = field(default_factory=list)
    slos: list[SLOResult] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    acked: list[AckedWrite] = field(default_factory=list)
    lost_writes: int = 0
    divergent_keys: int = 0
    conflicts: int = 0
    integrity_checked: bool = False
    canary: dict[str, float | None] = field(default_factory=dict)
    lag_series: list[Series] = field(default_factory=list)
    target_events: list[TargetEvent] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    injection_started_at: float | None = None
    #: the datastores' canaries (lag series, write attempts, integrity)
    datastores: DatastoreCanaries = field(default_factory=lambda: DatastoreCanaries([]))
    #: per region, 1 while its database accepts writes (the target's regionReady query)
    region_ready: list[Series] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        """The exit code of ``chaosaa run`` for this run."""
        return run_exit_code(self.stopped, self.slos, self.steady_after)
