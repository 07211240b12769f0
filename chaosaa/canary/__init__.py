"""Datastore canaries (DESIGN.md section 8a): canary lag, lost writes and divergence
measured in the user's own databases, independently of the application and its exporters.
"""

from __future__ import annotations

from chaosaa.canary.config import connections
from chaosaa.canary.probe import CanaryProbe, Integrity, LagPoint, LinkSummary
from chaosaa.canary.stores import CanaryStore, CanaryStoreError, Connection, ddl, store_for

__all__ = [
    "CanaryProbe",
    "CanaryStore",
    "CanaryStoreError",
    "Connection",
    "Integrity",
    "LagPoint",
    "LinkSummary",
    "connections",
    "ddl",
    "store_for",
]
