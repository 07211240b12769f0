"""Open-loop traffic generator (load, failover probe, acked-write ledger) and read-back.

Public API::

    TrafficGenerator, TrafficCounters, RegionCounts       # generator
    read_back, wait_converged, canary_lag, Convergence    # readback
    ReadbackError, CanaryError
    ERROR_CLASSES, parse_write_value                      # recording
"""

from chaosaa.traffic.generator import (
    HOME_HEADER,
    REGION_HEADER,
    RegionCounts,
    TrafficCounters,
    TrafficGenerator,
)
from chaosaa.traffic.readback import (
    CanaryError,
    Convergence,
    ReadbackError,
    canary_lag,
    divergent_keys,
    read_back,
    wait_converged,
)
from chaosaa.traffic.recording import ERROR_CLASSES, parse_write_value

__all__ = [
    "ERROR_CLASSES",
    "HOME_HEADER",
    "REGION_HEADER",
    "CanaryError",
    "Convergence",
    "ReadbackError",
    "RegionCounts",
    "TrafficCounters",
    "TrafficGenerator",
    "canary_lag",
    "divergent_keys",
    "parse_write_value",
    "read_back",
    "wait_converged",
]
