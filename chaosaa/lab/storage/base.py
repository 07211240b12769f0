"""Where a demo node keeps its keys: the storage interface and what every backend shares.

A backend stores the current version of every key (value or tombstone, hybrid logical
clock, origin region, origin time) and acknowledges a write only after its COMMIT.
``replicates`` says who replicates between regions: the node itself (SQLite, the demo
system) or the database (PostgreSQL, MariaDB Galera), in which case the node's own HTTP
replication is off.
"""

from __future__ import annotations

import abc
import time

from chaosaa.lab.hlc import HybridLogicalClock, Version
from chaosaa.lab.store import Record

#: the demo node's table in a real database (the canaries have a table of their own)
KV_TABLE = "chaosaa_kv"


class StorageError(Exception):
    """The database cannot serve the request now (unreachable, not in quorum, read-only)."""


class KVStorage(abc.ABC):
    """The demo node's storage. Every method is a coroutine; none blocks the event loop."""

    #: True when the database replicates between regions by itself
    replicates: bool = False

    def __init__(self, region: str) -> None:
        self.region = region
        self.clock = HybridLogicalClock()

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections (and create the table where the backend may)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def read(self, key: str) -> Record | None:
        """The stored version of ``key`` (tombstones included), or None."""

    @abc.abstractmethod
    async def write(self, key: str, value: bytes | None) -> Record:
        """Write (``value=None``: delete) ``key``; returns after COMMIT."""

    @abc.abstractmethod
    async def scan(self, prefix: str, limit: int) -> list[Record]:
        """Up to ``limit`` keys starting with ``prefix`` (literally), in key order."""

    def new_version(self, key: str, value: bytes | None) -> Record:
        wall, logical = self.clock.now()
        return Record(key, value, value is None, Version(wall, logical, self.region), time.time())


def like_prefix(prefix: str) -> str:
    """A LIKE pattern that matches ``prefix`` literally (escape character ``\\``)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
