"""Database systems under test for the lab: real servers, real replication, real exporters.

``SYSTEMS`` maps a system name (``chaosaa lab up --system NAME``) to its class. See
:mod:`chaosaa.lab.systems.base` for the lifecycle (construct, read ``paths()``, start with
routes through the lab's link proxies, read ``databases()`` and ``exporters``, stop).
"""

from __future__ import annotations

from chaosaa.lab.systems.base import (
    Address,
    DatabaseSystem,
    DbEndpoint,
    DbKind,
    Exporter,
    Flow,
    LagMetric,
    RegionDatabase,
    ReplicationPath,
    default_schema,
)
from chaosaa.lab.systems.galera import Galera
from chaosaa.lab.systems.postgres import PostgresAA, PostgresHA

SYSTEMS: dict[str, type[DatabaseSystem]] = {
    PostgresHA.name: PostgresHA,
    PostgresAA.name: PostgresAA,
    Galera.name: Galera,
}


__all__ = [
    "SYSTEMS",
    "Address",
    "DatabaseSystem",
    "DbEndpoint",
    "DbKind",
    "Exporter",
    "Flow",
    "Galera",
    "LagMetric",
    "PostgresAA",
    "PostgresHA",
    "RegionDatabase",
    "ReplicationPath",
    "default_schema",
]
