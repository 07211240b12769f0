"""Open-loop traffic generator (load, failover probe, acked-write ledger) and read-back.

Public API::

    TrafficGenerator, TrafficCounters, RegionCounts       # generator
    LoadPlan, load_plan, constant_plan                    # load profiles
    Probe, KvProbe, HttpProbe, kv_probe, http_probe       # probe protocols
    read_back, wait_converged, canary_lag, Convergence    # readback
    ReadbackError, CanaryError
    ERROR_CLASSES, parse_write_value                      # recording

Imported lazily: a worker process (``chaosaa.traffic.workers``) needs only the runner, and
starts faster without the GameDay models and aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaosaa.traffic.generator import (
        HOME_HEADER,
        REGION_HEADER,
        RegionCounts,
        TrafficCapacityError,
        TrafficCounters,
        TrafficGenerator,
        capacity,
    )
    from chaosaa.traffic.probes import HttpProbe, KvProbe, Probe, http_probe, kv_probe
    from chaosaa.traffic.profile import LoadPlan, constant_plan, load_plan
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

_WHERE = {
    "generator": [
        "HOME_HEADER",
        "REGION_HEADER",
        "RegionCounts",
        "TrafficCapacityError",
        "TrafficCounters",
        "TrafficGenerator",
        "capacity",
    ],
    "probes": ["HttpProbe", "KvProbe", "Probe", "http_probe", "kv_probe"],
    "profile": ["LoadPlan", "constant_plan", "load_plan"],
    "readback": [
        "CanaryError",
        "Convergence",
        "ReadbackError",
        "canary_lag",
        "divergent_keys",
        "read_back",
        "wait_converged",
    ],
    "recording": ["ERROR_CLASSES", "parse_write_value"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "ERROR_CLASSES",
    "HOME_HEADER",
    "REGION_HEADER",
    "CanaryError",
    "Convergence",
    "HttpProbe",
    "KvProbe",
    "LoadPlan",
    "Probe",
    "ReadbackError",
    "RegionCounts",
    "TrafficCapacityError",
    "TrafficCounters",
    "TrafficGenerator",
    "canary_lag",
    "capacity",
    "constant_plan",
    "divergent_keys",
    "http_probe",
    "kv_probe",
    "load_plan",
    "parse_write_value",
    "read_back",
    "wait_converged",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"chaosaa.traffic.{module}"), name)
