"""The demo node on a real database: PostgreSQL (asyncpg) and MySQL/MariaDB (aiomysql).

Reads go to the region's own server, writes to ``write`` (the primary for postgres-ha, the
local server otherwise). A write is one upsert in autocommit: acknowledged after COMMIT.
Every database call is bounded in time; a server that cannot serve (unreachable, a Galera
node outside the Primary Component, a standby) raises :class:`StorageError`, which the
node answers with 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

import aiomysql
import asyncpg
import pymysql

from chaosaa.lab.hlc import Version
from chaosaa.lab.storage.base import KV_TABLE, KVStorage, StorageError, like_prefix
from chaosaa.lab.store import Record

log = logging.getLogger(__name__)

T = TypeVar("T")
QUERY_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
#: Galera certification conflicts (a concurrent write in another region): retried
_MYSQL_RETRY = {1213}
_MYSQL_RETRIES = 3

POSTGRES_DDL = f"""CREATE TABLE IF NOT EXISTS {KV_TABLE} (
    kv_key text PRIMARY KEY, value bytea, deleted boolean NOT NULL, wall bigint NOT NULL,
    logical integer NOT NULL, origin text NOT NULL, origin_ts double precision NOT NULL)"""

MYSQL_DDL = f"""CREATE TABLE IF NOT EXISTS {KV_TABLE} (
    kv_key VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY,
    value LONGBLOB, deleted TINYINT NOT NULL, wall BIGINT NOT NULL, logical INT NOT NULL,
    origin VARCHAR(64) NOT NULL, origin_ts DOUBLE NOT NULL) ENGINE=InnoDB"""

_COLUMNS = "kv_key, value, deleted, wall, logical, origin, origin_ts"


def _record(row: Any) -> Record:
    key, value, deleted, wall, logical, origin, origin_ts = tuple(row)
    return Record(
        str(key),
        None if value is None else bytes(value),
        bool(deleted),
        Version(int(wall), int(logical), str(origin)),
        float(origin_ts),
    )


def _params(rec: Record) -> tuple[Any, ...]:
    v = rec.version
    return (rec.key, rec.value, rec.deleted, v.wall_ms, v.logical, v.origin, rec.origin_ts)


async def _bounded(what: str, coro: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(coro, QUERY_TIMEOUT)
    except TimeoutError:
        raise StorageError(f"{what}: no answer within {QUERY_TIMEOUT:g}s") from None


class PostgresStorage(KVStorage):
    replicates = True

    def __init__(self, region: str, read: Mapping[str, Any], write: Mapping[str, Any]) -> None:
        super().__init__(region)
        self._read_cfg, self._write_cfg = dict(read), dict(write)
        self._pools: dict[str, asyncpg.Pool] = {}

    async def start(self) -> None:
        # Pools connect lazily (min_size=0): a node starts even while its primary is cut off.
        for name, cfg in (("read", self._read_cfg), ("write", self._write_cfg)):
            self._pools[name] = asyncpg.create_pool(
                host=cfg["host"],
                port=cfg["port"],
                user=cfg["user"],
                password=cfg["password"],
                database=cfg["database"],
                min_size=0,
                max_size=8,
                timeout=CONNECT_TIMEOUT,
                command_timeout=QUERY_TIMEOUT,
            )
            await self._pools[name]

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.terminate()

    async def _call(self, pool: str, method: str, sql: str, *args: Any) -> Any:
        try:
            async with self._pools[pool].acquire(timeout=CONNECT_TIMEOUT) as conn:
                return await _bounded(f"{pool} query", getattr(conn, method)(sql, *args))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise StorageError(f"postgres ({pool}): {type(exc).__name__}: {exc}") from exc

    async def read(self, key: str) -> Record | None:
        row = await self._call(
            "read", "fetchrow", f"SELECT {_COLUMNS} FROM {KV_TABLE} WHERE kv_key = $1", key
        )
        return None if row is None else _record(row)

    async def write(self, key: str, value: bytes | None) -> Record:
        rec = self.new_version(key, value)
        await self._call(
            "write",
            "execute",
            f"INSERT INTO {KV_TABLE} ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (kv_key) DO UPDATE SET value = EXCLUDED.value, "
            "deleted = EXCLUDED.deleted, wall = EXCLUDED.wall, logical = EXCLUDED.logical, "
            "origin = EXCLUDED.origin, origin_ts = EXCLUDED.origin_ts",
            *_params(rec),
        )
        return rec

    async def scan(self, prefix: str, limit: int) -> list[Record]:
        rows = await self._call(
            "read",
            "fetch",
            f"SELECT {_COLUMNS} FROM {KV_TABLE} WHERE kv_key LIKE $1 ESCAPE '\\' "
            'ORDER BY kv_key COLLATE "C" LIMIT $2',
            like_prefix(prefix),
            limit,
        )
        return [_record(r) for r in rows]


class MySQLStorage(KVStorage):
    replicates = True

    def __init__(self, region: str, read: Mapping[str, Any], write: Mapping[str, Any]) -> None:
        super().__init__(region)
        self._read_cfg, self._write_cfg = dict(read), dict(write)
        self._pools: dict[str, aiomysql.Pool] = {}

    async def start(self) -> None:
        for name, cfg in (("read", self._read_cfg), ("write", self._write_cfg)):
            self._pools[name] = await aiomysql.create_pool(
                host=cfg["host"],
                port=cfg["port"],
                user=cfg["user"],
                password=cfg["password"],
                db=cfg["database"],
                minsize=0,
                maxsize=8,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT,
            )

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.terminate()
            await pool.wait_closed()

    async def _call(self, pool: str, sql: str, args: tuple[Any, ...], fetch: bool) -> Any:
        for attempt in range(_MYSQL_RETRIES):
            try:
                return await _bounded(f"{pool} query", self._once(pool, sql, args, fetch))
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] in _MYSQL_RETRY and attempt + 1 < _MYSQL_RETRIES:
                    continue
                raise StorageError(f"mysql ({pool}): {exc}") from exc
            except (OSError, pymysql.err.Error) as exc:
                raise StorageError(f"mysql ({pool}): {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    async def _once(self, pool: str, sql: str, args: tuple[Any, ...], fetch: bool) -> Any:
        async with self._pools[pool].acquire() as conn, conn.cursor() as cur:
            await cur.execute(sql, args)
            return await cur.fetchall() if fetch else None

    async def read(self, key: str) -> Record | None:
        rows = await self._call(
            "read", f"SELECT {_COLUMNS} FROM {KV_TABLE} WHERE kv_key = %s", (key,), True
        )
        return _record(rows[0]) if rows else None

    async def write(self, key: str, value: bytes | None) -> Record:
        rec = self.new_version(key, value)
        await self._call(
            "write",
            f"INSERT INTO {KV_TABLE} ({_COLUMNS}) VALUES (%s, UNHEX(%s), %s, %s, %s, %s, %s) "
            "ON DUPLICATE KEY UPDATE value = VALUES(value), deleted = VALUES(deleted), "
            "wall = VALUES(wall), logical = VALUES(logical), origin = VALUES(origin), "
            "origin_ts = VALUES(origin_ts)",
            # The value goes as hex: aiomysql 0.3.2 cannot escape bytes with PyMySQL 2.2.8
            # (escape_bytes_prefixed became a placeholder string there).
            (*_params(rec)[:1], None if rec.value is None else rec.value.hex(), *_params(rec)[2:]),
            False,
        )
        return rec

    async def scan(self, prefix: str, limit: int) -> list[Record]:
        rows = await self._call(
            "read",
            f"SELECT {_COLUMNS} FROM {KV_TABLE} WHERE kv_key LIKE %s ESCAPE '\\\\' "
            "ORDER BY kv_key LIMIT %s",
            (like_prefix(prefix), limit),
            True,
        )
        return [_record(r) for r in rows]
