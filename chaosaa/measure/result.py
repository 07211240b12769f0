"""What every measurement returns: the number, its unit, where it came from, how exact it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Where a number came from, as report.json's ``slos[].source`` states it.
PROBE = "probe"
PROMETHEUS = "prometheus"
READBACK = "readback"
CANARY = "canary"


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """One measured value.

    ``no_data`` means the data cannot support a verdict (DESIGN.md §4: no data is never a
    pass); ``measured`` may then still hold a partial value for the report, or None.
    ``details`` holds JSON-ready extras with camelCase keys; instants in it are unix
    seconds.
    """

    measured: float | None
    unit: str
    source: str
    error_bound_seconds: float | None
    details: dict[str, Any] = field(default_factory=dict)
    no_data: bool = False


@dataclass(frozen=True, kw_only=True)
class FailoverTime(Measurement):
    """failoverTime; ``recovered_at`` is the start of the first sustained healthy window."""

    degraded: bool
    recovered: bool
    recovered_at: float | None


@dataclass(frozen=True, kw_only=True)
class ReplicationLag(Measurement):
    """Peak replication lag during the fault and the time to get back under ``max``."""

    peak_at: float | None
    recovered_after: float | None


@dataclass(frozen=True, kw_only=True)
class CanaryLag(Measurement):
    """Lag of one canary write, per target region (None = never seen)."""

    by_region: dict[str, float | None]


@dataclass(frozen=True, kw_only=True)
class LostWrites(Measurement):
    """Acknowledged writes that did not survive, with per-region counts and examples."""

    acknowledged: int
    lost: int
    lost_by_region: dict[str, int]
    divergent_keys: int
    unverified: int
    examples: list[dict[str, Any]]
