"""Storage backends of the demo node: SQLite (demo system) or the region's real database.

:func:`open_storage` builds one from the node's config: no ``storage`` key → SQLite at
``db``; ``storage: {kind: postgres|mysql, read: {...}, write: {...}}`` (the shape of
:meth:`chaosaa.lab.systems.RegionDatabase.to_config`) → that database.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chaosaa.lab.storage.base import KV_TABLE, KVStorage, StorageError
from chaosaa.lab.storage.sql import MYSQL_DDL, POSTGRES_DDL, MySQLStorage, PostgresStorage
from chaosaa.lab.storage.sqlite import SqliteStorage

#: the demo table's DDL per database kind (systems create it before replication starts)
KV_DDL = {"postgres": POSTGRES_DDL, "mysql": MYSQL_DDL}


def open_storage(region: str, config: Mapping[str, Any]) -> KVStorage:
    """The storage a node config asks for (not started yet)."""
    storage = config.get("storage")
    if not storage:
        return SqliteStorage(Path(config["db"]), region)
    read, write = storage["read"], storage["write"]
    kind = read["kind"]
    if kind == "postgres":
        return PostgresStorage(region, read, write)
    if kind == "mysql":
        return MySQLStorage(region, read, write)
    raise ValueError(f"unknown storage kind {kind!r}: postgres or mysql")


__all__ = [
    "KV_DDL",
    "KV_TABLE",
    "KVStorage",
    "MySQLStorage",
    "PostgresStorage",
    "SqliteStorage",
    "StorageError",
    "open_storage",
]
