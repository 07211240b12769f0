"""The operator's own resources besides the GameDay spec: ``GameDayRun``'s spec and the
statuses of both kinds, as pydantic models (rendered into the CRDs by ``spec.crd``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from chaosaa.spec.types import NAME_PATTERN

#: RFC 3339 instants in status, e.g. ``2026-11-26T10:00:00Z``
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]

RunPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Aborted", "Error", "Interrupted"]
RUN_PHASES: tuple[str, ...] = (
    "Pending",
    "Running",
    "Succeeded",
    "Failed",
    "Aborted",
    "Error",
    "Interrupted",
)
#: phases after which nothing happens to a run any more
TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "Aborted", "Error", "Interrupted"})
RunVerdict = Literal["passed", "failed", "aborted", "error", "interrupted"]


class StatusModel(BaseModel):
    """camelCase like the spec; unknown fields tolerated when status is read back."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


# --------------------------------------------------------------------------- common


class Condition(StatusModel):
    """A Kubernetes-style condition (``Valid``, ``Suspended``, ...)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: Timestamp | None = None
    observed_generation: int | None = None


# --------------------------------------------------------------------------- GameDay


class LastRun(StatusModel):
    """The most recent finished run of a GameDay."""

    name: str
    phase: RunPhase | None = None
    verdict: RunVerdict | None = None
    failover_seconds: float | None = Field(None, description="failoverTime SLO, measured")
    peak_lag_seconds: float | None = Field(None, description="replicationLag SLO, peak")
    finished_at: Timestamp | None = None


class GameDayStatus(StatusModel):
    observed_generation: int | None = None
    last_schedule_time: Timestamp | None = Field(
        None, description="the most recent slot a run was created for"
    )
    next_schedule_time: Timestamp | None = None
    last_trigger: str | None = Field(
        None, description="value of the chaosaa.io/trigger annotation last acted upon"
    )
    active: list[str] = Field(default_factory=list, description="runs not finished yet")
    last_run: LastRun | None = None
    conditions: list[Condition] = Field(default_factory=list)


# --------------------------------------------------------------------------- GameDayRun


class GameDayRunSpec(StatusModel):
    """One run of a GameDay: which one, why, and the GameDay's spec when it fired."""

    game_day: str = Field(pattern=NAME_PATTERN, description="name of the GameDay")
    trigger: Literal["schedule", "manual"] = Field(description="what created the run")
    scheduled_time: Timestamp | None = Field(None, description="the cron slot (schedule)")
    game_day_spec: dict[str, Any] = Field(
        description="the GameDay's spec when the run was created (later edits do not apply); "
        "validated when the GameDay was admitted, and by the operator before the run starts"
    )


class FaultStatus(StatusModel):
    name: str
    type: str
    scope: str = ""
    requested_at: Timestamp | None = None
    effective_at: Timestamp | None = None
    reverted_at: Timestamp | None = None
    time_to_effect_seconds: float | None = None
    time_to_revert_seconds: float | None = None
    error: str | None = None


class SLOStatus(StatusModel):
    name: str
    type: str
    objective: str
    measured: float | None = None
    unit: str = ""
    verdict: Literal["passed", "failed", "unknown"]
    source: str | None = None
    error_bound_seconds: float | None = None


class CheckStatus(StatusModel):
    name: str
    value: float | None = None
    passed: bool
    expect: str


class SteadyStateStatus(StatusModel):
    before: list[CheckStatus] = Field(default_factory=list)
    after: list[CheckStatus] = Field(default_factory=list)


class RunSummary(StatusModel):
    """The report in numbers (the full report stays with the run's logs)."""

    duration_seconds: float | None = None
    requests: int = 0
    errors: int = 0
    acknowledged_writes: int = 0
    lost_writes: int = 0
    divergent_keys: int = 0
    conflicts: int = 0


class GameDayRunStatus(StatusModel):
    phase: RunPhase | None = None
    verdict: RunVerdict | None = None
    exit_code: int | None = Field(None, description="what `chaosaa run` would have exited with")
    reason: str | None = None
    current_phase: str | None = Field(None, description="engine phase: preflight, inject, ...")
    operator: str | None = Field(None, description="the operator process that runs it")
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    failover_seconds: float | None = None
    peak_lag_seconds: float | None = None
    faults: list[FaultStatus] = Field(default_factory=list)
    slos: list[SLOStatus] = Field(default_factory=list)
    steady_state: SteadyStateStatus | None = None
    summary: RunSummary | None = None
    rolled_back: list[str] = Field(
        default_factory=list, description="what a rollback removed after an interruption"
    )
    conditions: list[Condition] = Field(default_factory=list)
