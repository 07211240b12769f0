"""Measurements of a GameDay run (DESIGN.md §4), as pure functions over recorded data.

Nothing here does I/O: the engine queries Prometheus and drives traffic, then hands the
data to these functions. Every function returns a ``Measurement`` (or a subclass) that
says what was measured, in which unit, from which source and how exact it is.
"""

from chaosaa.measure.aggregate import Aggregate, aggregate
from chaosaa.measure.failover import failover_time_from_samples, failover_time_from_series
from chaosaa.measure.lag import canary_lag, replication_lag
from chaosaa.measure.latency import Latency, LatencyStats, LatencyWindow, latency
from chaosaa.measure.lost_writes import lost_writes
from chaosaa.measure.result import (
    CANARY,
    PROBE,
    PROMETHEUS,
    READBACK,
    CanaryLag,
    FailoverTime,
    LostWrites,
    Measurement,
    ReplicationLag,
)
from chaosaa.measure.stats import Percentile, percentile, send_error_p99
from chaosaa.measure.traffic import (
    UNKNOWN_REGION,
    error_rate,
    region_of,
    success_ratio,
    success_ratio_by_region,
)

__all__ = [
    "CANARY",
    "PROBE",
    "PROMETHEUS",
    "READBACK",
    "UNKNOWN_REGION",
    "Aggregate",
    "CanaryLag",
    "FailoverTime",
    "Latency",
    "LatencyStats",
    "LatencyWindow",
    "LostWrites",
    "Measurement",
    "Percentile",
    "ReplicationLag",
    "aggregate",
    "canary_lag",
    "error_rate",
    "failover_time_from_samples",
    "failover_time_from_series",
    "latency",
    "lost_writes",
    "percentile",
    "region_of",
    "replication_lag",
    "send_error_p99",
    "success_ratio",
    "success_ratio_by_region",
]
