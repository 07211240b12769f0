"""Durable key-value storage of a demo node (SQLite), with a replication log.

Every method is synchronous and must be called from one dedicated thread (the node runs
them through a single-worker executor): SQLite connections are not shared across threads
and the HLC is not locked.

Layout:
- ``kv``: the current version of each key (tombstones have ``deleted = 1``);
- ``log``: every *local* write, in commit order; peers are fed from it;
- ``cursors``: per peer, the highest log sequence the peer acknowledged.

Because each region ships only its own writes, directly to every peer, and the log is
durable, a peer that was cut off receives the full backlog once the link heals: replay is
idempotent because applying a version never replaces a newer one.
"""

from __future__ import annotations

import base64
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from chaosaa.lab.hlc import HybridLogicalClock, Version

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB,
    deleted INTEGER NOT NULL,
    wall INTEGER NOT NULL,
    logical INTEGER NOT NULL,
    origin TEXT NOT NULL,
    origin_ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    value BLOB,
    deleted INTEGER NOT NULL,
    wall INTEGER NOT NULL,
    logical INTEGER NOT NULL,
    origin_ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (peer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Record:
    """One version of one key, as stored or as shipped to a peer."""

    key: str
    value: bytes | None
    deleted: bool
    version: Version
    #: origin wall-clock time (seconds) of the write; used for the replication-lag metric
    origin_ts: float

    def to_wire(self) -> dict[str, object]:
        return {
            "key": self.key,
            "value": None if self.value is None else base64.b64encode(self.value).decode(),
            "deleted": self.deleted,
            "wall": self.version.wall_ms,
            "logical": self.version.logical,
            "origin": self.version.origin,
            "originTs": self.origin_ts,
        }

    @classmethod
    def from_wire(cls, data: dict[str, object]) -> Record:
        raw = data.get("value")
        return cls(
            key=str(data["key"]),
            value=None if raw is None else base64.b64decode(str(raw)),
            deleted=bool(data["deleted"]),
            version=Version(int(str(data["wall"])), int(str(data["logical"])), str(data["origin"])),
            origin_ts=float(str(data["originTs"])),
        )

    def to_public(self) -> dict[str, object]:
        """Shape of ``GET /internal/kv/{key}``."""
        return {
            "key": self.key,
            "exists": not self.deleted,
            "deleted": self.deleted,
            "value": None if self.value is None else self.value.decode("utf-8", "replace"),
            "valueBase64": None if self.value is None else base64.b64encode(self.value).decode(),
            "hlc": self.version.hlc_text(),
            "wall": self.version.wall_ms,
            "logical": self.version.logical,
            "origin": self.version.origin,
            "originTs": self.origin_ts,
        }


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int
    #: remote versions discarded because a concurrent write from another region is newer
    conflicts: int


@dataclass(frozen=True, slots=True)
class LogBatch:
    records: list[tuple[int, Record]]
    head_seq: int


class Store:
    """SQLite-backed KV store of one region. Use from a single thread only."""

    def __init__(self, path: Path, region: str) -> None:
        self.region = region
        self.clock = HybridLogicalClock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so "ack after commit" is
        # explicit in the code rather than implied by the sqlite3 module's heuristics.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is fsynced before it returns, so an acknowledged write survives a
        # crash of the node process (and of the machine).
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT MAX(wall), MAX(logical) FROM kv").fetchone()
        if row and row[0] is not None:
            self.clock.observe(int(row[0]), int(row[1]))

    def close(self) -> None:
        self._db.close()

    # -- local API -----------------------------------------------------------------
    def write(self, key: str, value: bytes | None) -> Record:
        """Write (or, with ``value=None``, delete) a key; returns after COMMIT."""
        wall, logical = self.clock.now()
        rec = Record(key, value, value is None, Version(wall, logical, self.region), time.time())
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._upsert(rec)
            self._db.execute(
                "INSERT INTO log (key, value, deleted, wall, logical, origin_ts)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, value, int(rec.deleted), wall, logical, rec.origin_ts),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return rec

    def read(self, key: str) -> Record | None:
        row = self._db.execute(
            "SELECT key, value, deleted, wall, logical, origin, origin_ts FROM kv WHERE key = ?",
            (key,),
        ).fetchone()
        return None if row is None else _record(row)

    def scan(self, prefix: str, limit: int) -> list[Record]:
        # Escape LIKE wildcards so a prefix is matched literally.
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._db.execute(
            "SELECT key, value, deleted, wall, logical, origin, origin_ts FROM kv"
            " WHERE key LIKE ? ESCAPE '\\' ORDER BY key LIMIT ?",
            (pattern, limit),
        ).fetchall()
        return [_record(r) for r in rows]

    # -- replication -----------------------------------------------------------------
    def apply_remote(self, records: list[Record]) -> ApplyResult:
        """Merge a peer's versions with last-writer-wins; idempotent under replay."""
        applied = conflicts = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for rec in records:
                self.clock.observe(rec.version.wall_ms, rec.version.logical)
                current = self.read(rec.key)
                if current is None or rec.version > current.version:
                    self._upsert(rec)
                    applied += 1
                elif rec.version < current.version and current.version.origin != rec.version.origin:
                    # A write from another region that this one never saw is newer: two
                    # regions wrote the key concurrently and LWW discarded this version.
                    # (Older versions from the *same* origin are plain replays.)
                    conflicts += 1
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return ApplyResult(applied, conflicts)

    def log_batch(self, after_seq: int, max_records: int, max_bytes: int) -> LogBatch:
        head = self.head_seq()
        rows = self._db.execute(
            "SELECT seq, key, value, deleted, wall, logical, origin_ts FROM log"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, max_records),
        ).fetchall()
        out: list[tuple[int, Record]] = []
        size = 0
        for seq, key, value, deleted, wall, logical, origin_ts in rows:
            size += len(key) + (len(value) if value is not None else 0) + 96
            if out and size > max_bytes:
                break
            rec = Record(key, value, bool(deleted), Version(wall, logical, self.region), origin_ts)
            out.append((int(seq), rec))
        return LogBatch(out, head)

    def head_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM log").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def cursor(self, peer: str) -> int:
        row = self._db.execute("SELECT seq FROM cursors WHERE peer = ?", (peer,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, peer: str, seq: int) -> None:
        self._db.execute(
            "INSERT INTO cursors (peer, seq) VALUES (?, ?)"
            " ON CONFLICT(peer) DO UPDATE SET seq = excluded.seq",
            (peer, seq),
        )

    def _upsert(self, rec: Record) -> None:
        self._db.execute(
            "INSERT INTO kv (key, value, deleted, wall, logical, origin, origin_ts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
            " value = excluded.value, deleted = excluded.deleted, wall = excluded.wall,"
            " logical = excluded.logical, origin = excluded.origin,"
            " origin_ts = excluded.origin_ts",
            (
                rec.key,
                rec.value,
                int(rec.deleted),
                rec.version.wall_ms,
                rec.version.logical,
                rec.version.origin,
                rec.origin_ts,
            ),
        )


def _record(row: tuple[object, ...]) -> Record:
    key, value, deleted, wall, logical, origin, origin_ts = row
    return Record(
        key=str(key),
        value=None if value is None else bytes(value),  # type: ignore[call-overload]
        deleted=bool(deleted),
        version=Version(int(wall), int(logical), str(origin)),  # type: ignore[call-overload]
        origin_ts=float(origin_ts),  # type: ignore[arg-type]
    )
