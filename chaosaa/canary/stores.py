"""Connections to one region's database for the canaries: PostgreSQL (asyncpg) and
MySQL/MariaDB (aiomysql). chaosaa writes only into its own table (default
``chaosaa_canary``), created if absent, keyed by (run, origin region, sequence number).
"""

from __future__ import annotations

import abc
import asyncio
import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import aiomysql
import asyncpg
import pymysql

from chaosaa.errors import EnvironmentError_, InvalidInputError

T = TypeVar("T")
CONNECT_TIMEOUT = 2.0
QUERY_TIMEOUT = 2.0
TABLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

DatastoreKind = Literal["postgres", "mysql"]


class CanaryStoreError(EnvironmentError_):
    """A canary write or read did not succeed (unreachable, refused, timed out)."""


@dataclass(frozen=True)
class Connection:
    """Where one region's database is, with resolved credentials (never logged)."""

    kind: DatastoreKind
    host: str
    port: int
    user: str
    password: str = ""
    database: str = "postgres"
    table: str = "chaosaa_canary"

    def __post_init__(self) -> None:
        if not TABLE_RE.fullmatch(self.table):
            raise InvalidInputError(f"canary table {self.table!r}: use [a-z_][a-z0-9_]*")

    def __repr__(self) -> str:
        return f"Connection({self.kind}://{self.user}@{self.host}:{self.port}/{self.database})"


def ddl(kind: DatastoreKind, table: str = "chaosaa_canary") -> str:
    """The canary table (a lab system creates it with its schema; canaries create it too)."""
    if kind == "postgres":
        return (
            f"CREATE TABLE IF NOT EXISTS {table} (run_id text NOT NULL, origin text NOT NULL, "
            "seq bigint NOT NULL, value text NOT NULL, written_at double precision NOT NULL, "
            "PRIMARY KEY (run_id, origin, seq))"
        )
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (run_id VARCHAR(64) NOT NULL, "
        "origin VARCHAR(64) NOT NULL, seq BIGINT NOT NULL, value VARCHAR(128) NOT NULL, "
        "written_at DOUBLE NOT NULL, PRIMARY KEY (run_id, origin, seq)) ENGINE=InnoDB"
    )


async def _bounded(what: str, coro: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(coro, QUERY_TIMEOUT)
    except TimeoutError:
        raise CanaryStoreError(f"{what}: no answer within {QUERY_TIMEOUT:g}s") from None


class CanaryStore(abc.ABC):
    """One region's database as the canaries use it. Every call is bounded in time."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.table = conn.table

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ensure_table(self) -> None: ...

    @abc.abstractmethod
    async def insert(
        self, run_id: str, origin: str, seq: int, value: str, written_at: float
    ) -> None:
        """Insert one canary; returns after COMMIT (the acknowledgement)."""

    @abc.abstractmethod
    async def present(self, run_id: str, origin: str, seqs: Sequence[int]) -> set[int]:
        """Which of ``seqs`` (canaries of ``origin``) are visible here."""

    @abc.abstractmethod
    async def read_all(self, run_id: str) -> dict[tuple[str, int], str]:
        """Every canary of the run visible here: (origin, seq) -> value."""


class PostgresCanaryStore(CanaryStore):
    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = asyncpg.create_pool(
            host=self.conn.host,
            port=self.conn.port,
            user=self.conn.user,
            password=self.conn.password,
            database=self.conn.database,
            min_size=0,
            max_size=4,
            timeout=CONNECT_TIMEOUT,
            command_timeout=QUERY_TIMEOUT,
        )
        await self._pool

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()

    async def _call(self, what: str, method: str, sql: str, *args: Any) -> Any:
        assert self._pool is not None
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as c:
                return await _bounded(what, getattr(c, method)(sql, *args))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise CanaryStoreError(f"{what}: {type(exc).__name__}: {exc}") from exc

    async def ensure_table(self) -> None:
        await self._call("create canary table", "execute", ddl("postgres", self.table))

    async def insert(
        self, run_id: str, origin: str, seq: int, value: str, written_at: float
    ) -> None:
        await self._call(
            "canary write",
            "execute",
            f"INSERT INTO {self.table} (run_id, origin, seq, value, written_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            run_id,
            origin,
            seq,
            value,
            written_at,
        )

    async def present(self, run_id: str, origin: str, seqs: Sequence[int]) -> set[int]:
        rows = await self._call(
            "canary poll",
            "fetch",
            f"SELECT seq FROM {self.table} WHERE run_id = $1 AND origin = $2 AND seq = ANY($3)",
            run_id,
            origin,
            list(seqs),
        )
        return {int(r[0]) for r in rows}

    async def read_all(self, run_id: str) -> dict[tuple[str, int], str]:
        rows = await self._call(
            "canary read-back",
            "fetch",
            f"SELECT origin, seq, value FROM {self.table} WHERE run_id = $1",
            run_id,
        )
        return {(str(r[0]), int(r[1])): str(r[2]) for r in rows}


class MySQLCanaryStore(CanaryStore):
    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._pool: aiomysql.Pool | None = None

    async def open(self) -> None:
        self._pool = await aiomysql.create_pool(
            host=self.conn.host,
            port=self.conn.port,
            user=self.conn.user,
            password=self.conn.password,
            db=self.conn.database,
            minsize=0,
            maxsize=4,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
        )

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            await self._pool.wait_closed()

    async def _call(self, what: str, sql: str, args: tuple[Any, ...] = ()) -> Any:
        assert self._pool is not None
        pool = self._pool

        async def once() -> Any:
            async with pool.acquire() as c, c.cursor() as cur:
                await cur.execute(sql, args)
                return await cur.fetchall()

        try:
            return await _bounded(what, once())
        except (OSError, pymysql.err.Error) as exc:
            raise CanaryStoreError(f"{what}: {type(exc).__name__}: {exc}") from exc

    async def ensure_table(self) -> None:
        # Asked first: CREATE TABLE IF NOT EXISTS on an existing table is a server *warning*,
        # which the driver turns into a Python warning.
        exists = await self._call(
            "look up canary table",
            "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() "
            "AND table_name = %s",
            (self.table,),
        )
        if not exists:
            await self._call("create canary table", ddl("mysql", self.table))

    async def insert(
        self, run_id: str, origin: str, seq: int, value: str, written_at: float
    ) -> None:
        await self._call(
            "canary write",
            f"INSERT INTO {self.table} (run_id, origin, seq, value, written_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            (run_id, origin, seq, value, written_at),
        )

    async def present(self, run_id: str, origin: str, seqs: Sequence[int]) -> set[int]:
        if not seqs:
            return set()
        marks = ", ".join(["%s"] * len(seqs))
        rows = await self._call(
            "canary poll",
            f"SELECT seq FROM {self.table} WHERE run_id = %s AND origin = %s AND seq IN ({marks})",
            (run_id, origin, *seqs),
        )
        return {int(r[0]) for r in rows}

    async def read_all(self, run_id: str) -> dict[tuple[str, int], str]:
        rows = await self._call(
            "canary read-back",
            f"SELECT origin, seq, value FROM {self.table} WHERE run_id = %s",
            (run_id,),
        )
        return {(str(r[0]), int(r[1])): str(r[2]) for r in rows}


def store_for(conn: Connection) -> CanaryStore:
    return PostgresCanaryStore(conn) if conn.kind == "postgres" else MySQLCanaryStore(conn)
