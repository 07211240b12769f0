"""The demo system's storage: SQLite through one dedicated thread (see :mod:`chaosaa.lab.store`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from chaosaa.lab.storage.base import KVStorage
from chaosaa.lab.store import Record, Store

T = TypeVar("T")


class SqliteStorage(KVStorage):
    """SQLite file per region; the node replicates it to its peers over HTTP."""

    replicates = False

    def __init__(self, path: Path, region: str) -> None:
        super().__init__(region)
        self.path = path
        # One thread owns the SQLite connection: no blocking I/O on the event loop, and
        # no cross-thread use of the connection.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{region}")
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        assert self._store is not None, "storage not started"
        return self._store

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the SQLite thread (also used by the node's replication)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        self._store = await self.run(Store, self.path, self.region)

    async def close(self) -> None:
        if self._store is not None:
            await self.run(self._store.close)
        self._executor.shutdown(wait=True)

    async def read(self, key: str) -> Record | None:
        return await self.run(self.store.read, key)

    async def write(self, key: str, value: bytes | None) -> Record:
        # Store.write returns only after COMMIT (synchronous=FULL): the ack follows it.
        return await self.run(self.store.write, key, value)

    async def scan(self, prefix: str, limit: int) -> list[Record]:
        return await self.run(self.store.scan, prefix, limit)
