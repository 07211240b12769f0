"""PostgreSQL systems: ``postgres-ha`` (primary + streaming standbys) and ``postgres-aa``
(every region writable, pglogical both ways between every pair, last-update-wins).

Each region is one postmaster on 127.0.0.1 with its own data directory under a fresh
:class:`DataRoot`, run as the ``postgres`` user when chaosaa is root. Password
authentication (scram) is on for TCP, so clients and the canaries use real credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import secrets
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import asyncpg

from chaosaa.lab.systems import exporters
from chaosaa.lab.systems._proc import (
    HOST,
    DataRoot,
    ServerProcess,
    ServerUser,
    SystemError_,
    free_port,
    require_binaries,
    until,
)
from chaosaa.lab.systems.base import (
    DatabaseSystem,
    DbEndpoint,
    Flow,
    LagMetric,
    RegionDatabase,
    ReplicationPath,
    default_schema,
    loopback_address,
)

log = logging.getLogger(__name__)

PG_BIN = Path(os.environ.get("CHAOSAA_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "chaosaa"
SUPERUSER = "postgres"
_IPC_RMID = 0

_BASE_CONF = {
    "listen_addresses": f"'{HOST}'",
    # TCP only: a Unix socket in /var/run/postgresql would need that directory, and one
    # in the data directory would outlive nothing we do not remove anyway.
    "unix_socket_directories": "''",
    "max_connections": "60",
    "shared_buffers": "16MB",
    # mmap: dynamic shared memory lives in the data directory, so removing the directory
    # removes it even after a SIGKILL (posix would leave /dev/shm/PostgreSQL.* behind).
    "dynamic_shared_memory_type": "mmap",
    "wal_level": "logical",
    "max_wal_senders": "16",
    "max_replication_slots": "16",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    "wal_receiver_status_interval": "1s",
    "wal_sender_timeout": "30s",
    "wal_receiver_timeout": "30s",
    "track_commit_timestamp": "on",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


class PgServer:
    """One PostgreSQL server of one region."""

    def __init__(self, region: str, root: DataRoot, log_dir: Path, password: str) -> None:
        self.region = region
        self.root = root
        self.port = free_port()
        self.data = root.path / region
        self.password = password
        self.process = ServerProcess(
            f"postgres-{region}",
            [str(PG_BIN / "postgres"), "-D", str(self.data)],
            root.user,
            log_dir / f"postgres-{region}.log",
        )

    @property
    def endpoint(self) -> DbEndpoint:
        return DbEndpoint("postgres", HOST, self.port, SUPERUSER, self.password, DATABASE)

    async def initdb(self) -> None:
        pwfile = self.root.path / f"pw-{self.region}"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self.root.user.chown(pwfile)
        try:
            await self.root.user.run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                    "--no-instructions",
                ],
                f"initdb for {self.region}",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    async def basebackup(self, primary: PgServer, slot: str) -> None:
        """Clone ``primary`` into this server's data directory as a hot standby."""
        await self.root.user.run(
            [
                str(PG_BIN / "pg_basebackup"),
                "-D",
                str(self.data),
                "-h",
                HOST,
                "-p",
                str(primary.port),
                "-U",
                SUPERUSER,
                "-X",
                "stream",
                "-C",
                "-S",
                slot,
                "--no-sync",
                "-c",
                "fast",
                "-d",
                f"password={primary.password}",
            ],
            f"pg_basebackup of {primary.region} for {self.region}",
        )
        # pg_basebackup copied the primary's port; this server has its own.
        self.set_conf({"port": str(self.port)})
        signal_file = self.data / "standby.signal"
        signal_file.touch()
        self.root.user.chown(signal_file)

    def set_conf(self, settings: dict[str, str]) -> None:
        """Append settings to postgresql.conf (later lines win in PostgreSQL)."""
        with (self.data / "postgresql.conf").open("a") as f:
            f.write("\n# chaosaa lab\n")
            for key, value in settings.items():
                f.write(f"{key} = {value}\n")

    async def start(self, time_limit: float) -> None:
        await self.process.start()
        await until(
            self._accepts,
            time_limit=time_limit,
            what=f"postgres-{self.region} to accept connections",
            watch=[self.process],
        )

    async def _accepts(self) -> bool:
        conn = await self.connect(database="postgres", time_limit=1.0)
        await conn.close()
        return True

    async def connect(
        self, database: str = DATABASE, time_limit: float = 5.0
    ) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=HOST,
            port=self.port,
            user=SUPERUSER,
            password=self.password,
            database=database,
            timeout=time_limit,
        )

    async def execute(self, *statements: str, database: str = DATABASE) -> None:
        conn = await self.connect(database)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    async def fetch(self, sql: str, *args: Any, database: str = DATABASE) -> list[asyncpg.Record]:
        conn = await self.connect(database)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def stop(self) -> None:
        shm = self._shm_id()
        # SIGINT = "fast" shutdown: roll back sessions, checkpoint, remove shared memory.
        await self.process.stop(signal.SIGINT, grace=15.0)
        if shm is not None:
            _remove_sysv_segment(shm)

    def _shm_id(self) -> int | None:
        """The postmaster's SysV shared-memory id (line 7 of postmaster.pid: key and id).

        A postmaster that was killed leaves that segment behind; stop removes it.
        """
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            return int(lines[6].split()[1])
        except (OSError, IndexError, ValueError):
            return None


def _remove_sysv_segment(shm_id: int) -> None:
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.shmctl(ctypes.c_int(shm_id), _IPC_RMID, None)


class _PostgresSystem(DatabaseSystem):
    kind = "postgres"

    def __init__(
        self,
        regions: Sequence[str],
        log_dir: Path,
        *,
        exporters: bool = True,
        schema: Sequence[str] | None = None,
        data_base: Path | None = None,
    ) -> None:
        super().__init__(regions, log_dir, exporters=exporters)
        self.schema = default_schema(self.kind) if schema is None else list(schema)
        self.user = ServerUser.for_service("postgres")
        self.password = secrets.token_hex(12)
        self._data_base = data_base
        # Ports are chosen now so that paths() can name every upstream before start.
        self._ports = {r: free_port() for r in self.regions}
        self.servers: dict[str, PgServer] = {}

    @classmethod
    def unavailable(cls) -> str | None:
        return require_binaries(
            [
                str(PG_BIN / "postgres"),
                str(PG_BIN / "initdb"),
                "setpriv",
                exporters.POSTGRES_EXPORTER,
            ]
        )

    def _make_servers(self) -> None:
        self.root = DataRoot(self.user, f"chaosaa-{self.name}-", self._data_base)
        for region in self.regions:
            server = PgServer(region, self.root, self.log_dir, self.password)
            server.port = self._ports[region]
            self.servers[region] = server
            self._add_process(region, server.process)

    async def _start_exporters(self, time_limit: float) -> None:
        if not self.with_exporters:
            return
        started = []
        for region, server in self.servers.items():
            assert self.root is not None
            proc, exp = exporters.postgres_exporter(
                region, server.endpoint, self.user, self.log_dir, self.root.path
            )
            self._add_process(region, proc)
            await proc.start()
            self.exporters[region] = exp
            started.append((proc, exp))
        await asyncio.gather(*(exporters.wait_ready(p, e, "pg_up", time_limit) for p, e in started))

    async def _stop(self) -> None:
        # Servers are stopped through PgServer (fast shutdown + shared memory), the rest
        # (exporters) as plain processes.
        servers = {id(s.process) for s in self.servers.values()}
        for proc in [p for p in self.processes.values() if id(p) not in servers]:
            with contextlib.suppress(Exception):
                await proc.stop()
        for server in reversed(list(self.servers.values())):
            try:
                await server.stop()
            except Exception:
                log.exception("stopping %s failed", server.process.name)
        self.processes.clear()
        self._process_region.clear()
        self.servers.clear()
        self.exporters.clear()
        if self.root is not None:
            self.root.remove()
            self.root = None


class PostgresHA(_PostgresSystem):
    """Primary in the first region, streaming hot standbys elsewhere: the article's trap."""

    name: ClassVar[str] = "postgres-ha"
    description: ClassVar[str] = (
        "PostgreSQL primary in the first region, streaming-replication hot standbys in the "
        "others; every region's node writes to the primary and reads locally"
    )
    lag_query: ClassVar[str | None] = "max(pg_replication_lag)"
    lag_metrics: ClassVar[tuple[LagMetric, ...]] = (
        LagMetric(
            "pg_replication_lag",
            "seconds",
            "on each standby: now() - pg_last_xact_replay_timestamp(), i.e. the age of the "
            "last replayed commit (0 on the primary). It measures lag only while the primary "
            "commits steadily (canaries or traffic); on an idle primary it grows anyway",
        ),
        LagMetric(
            "pg_stat_replication_pg_wal_lsn_diff",
            "bytes",
            "on the primary, per standby (label application_name = region): WAL written but "
            "not yet replayed by that standby",
        ),
    )

    @property
    def primary(self) -> str:
        return self.regions[0]

    def paths(self) -> list[ReplicationPath]:
        primary = loopback_address(self._ports[self.primary])
        out = []
        for r in self.regions[1:]:
            out.append(
                ReplicationPath(
                    r, self.primary, primary, "replication", (Flow(self.primary, r, "down"),)
                )
            )
            out.append(
                ReplicationPath(r, self.primary, primary, "write", (Flow(r, self.primary, "up"),))
            )
        return out

    async def _start(self, time_limit: float) -> None:
        self._make_servers()
        primary = self.servers[self.primary]
        await primary.initdb()
        primary.set_conf({**_BASE_CONF, "port": str(primary.port)})
        await primary.start(time_limit)
        await primary.execute(f"CREATE DATABASE {DATABASE}", database="postgres")
        if self.schema:
            await primary.execute(*self.schema)
        standbys = [self.servers[r] for r in self.regions[1:]]
        for standby in standbys:
            await standby.basebackup(primary, slot=_slot(standby.region))
            via = self.route(self.path("replication", standby.region, self.primary))
            # application_name = region: pg_stat_replication rows (and the exporter's
            # labels) name the standby's region.
            conninfo = (
                f"host={via.host} port={via.port} user={SUPERUSER} password={self.password} "
                f"application_name={standby.region} connect_timeout=2 keepalives_idle=5"
            )
            standby.set_conf(
                {
                    "primary_conninfo": f"'{conninfo}'",
                    "primary_slot_name": f"'{_slot(standby.region)}'",
                }
            )
        await asyncio.gather(*(s.start(time_limit) for s in standbys))
        await until(
            lambda: self._all_streaming(primary),
            time_limit=time_limit,
            what="every standby to stream from the primary",
            watch=[s.process for s in self.servers.values()],
        )
        await self._start_exporters(time_limit)

    async def _all_streaming(self, primary: PgServer) -> bool:
        rows = await primary.fetch(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
        )
        return {r["application_name"] for r in rows} >= set(self.regions[1:])

    def databases(self) -> dict[str, RegionDatabase]:
        self._check_regions_started()
        primary = self.servers[self.primary].endpoint
        out = {}
        for region, server in self.servers.items():
            write = primary
            if region != self.primary:
                via = self.route(self.path("write", region, self.primary))
                write = DbEndpoint(
                    "postgres", via.host, via.port, primary.user, primary.password, primary.database
                )
            out[region] = RegionDatabase(region, server.endpoint, write)
        return out


def _slot(region: str) -> str:
    return "standby_" + region.replace("-", "_")


_REPSET_TRIGGER = """
CREATE OR REPLACE FUNCTION chaosaa_replicate_new_tables() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE obj record;
BEGIN
  FOR obj IN SELECT * FROM pg_event_trigger_ddl_commands()
             WHERE command_tag = 'CREATE TABLE' AND schema_name = 'public' LOOP
    PERFORM pglogical.replication_set_add_table('default', obj.objid::regclass, false);
  END LOOP;
END $$;
CREATE EVENT TRIGGER chaosaa_replicate_new_tables ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION chaosaa_replicate_new_tables();
"""


class PostgresAA(_PostgresSystem):
    """Every region writable; pglogical subscriptions between every pair; last-update-wins."""

    name: ClassVar[str] = "postgres-aa"
    description: ClassVar[str] = (
        "PostgreSQL in every region, each writable; pglogical replication both ways between "
        "every pair of regions, conflicts resolved by last_update_wins (commit timestamps)"
    )
    lag_metrics: ClassVar[tuple[LagMetric, ...]] = (
        LagMetric(
            "pg_stat_replication_pg_wal_lsn_diff",
            "bytes",
            "on each provider, per subscriber (label application_name = the subscription, "
            "'<target>_from_<source>'): WAL not yet confirmed by that subscriber. pglogical "
            "exposes no lag in seconds; canary lag gives the seconds",
        ),
    )
    #: pglogical tells resolved conflicts only in the server log (see :meth:`conflicts`)
    conflicts_query: ClassVar[str | None] = "sum(chaosaa_lab_conflicts_total)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: region -> (log bytes read so far, conflicts counted in them)
        self._conflict_scan: dict[str, tuple[int, int]] = {}

    def conflicts(self) -> dict[str, int]:
        """Per region, incoming changes pglogical discarded because the local row was newer
        (``Resolution: keep_local``): the writes last-update-wins lost, as the demo counts
        its own conflicts. Read incrementally from each server's log."""
        out = {}
        for region, server in self.servers.items():
            offset, count = self._conflict_scan.get(region, (0, 0))
            try:
                with server.process.log_path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except OSError:
                chunk = b""
            # Count whole lines only; a partial last line is read again next time.
            complete = chunk[: chunk.rfind(b"\n") + 1]
            count += complete.count(b"Resolution: keep_local")
            self._conflict_scan[region] = (offset + len(complete), count)
            out[region] = count
        return out

    def paths(self) -> list[ReplicationPath]:
        # The subscriber (target) connects to the provider (source) and pulls its changes.
        return [
            ReplicationPath(
                target,
                source,
                loopback_address(self._ports[source]),
                "replication",
                (Flow(source, target, "down"),),
            )
            for target in self.regions
            for source in self.regions
            if source != target
        ]

    async def _start(self, time_limit: float) -> None:
        self._make_servers()
        servers = list(self.servers.values())
        await asyncio.gather(*(s.initdb() for s in servers))
        # Recent minors load only allow-listed output plugins (output_plugin_libraries);
        # pglogical's walsenders decode with "pglogical_output".
        extra = {}
        if "output_plugin_libraries" in await self._settings():
            extra["output_plugin_libraries"] = "'pgoutput, test_decoding, pglogical_output'"
        for s in servers:
            s.set_conf(
                {
                    **_BASE_CONF,
                    **extra,
                    "port": str(s.port),
                    "shared_preload_libraries": "'pglogical'",
                    "pglogical.conflict_resolution": "'last_update_wins'",
                    # logged (log_min_messages is warning): how conflicts are counted
                    "pglogical.conflict_log_level": "'warning'",
                    "max_worker_processes": "24",
                }
            )
        await asyncio.gather(*(s.start(time_limit) for s in servers))
        for s in servers:
            await s.execute(f"CREATE DATABASE {DATABASE}", database="postgres")
            await s.execute(
                "CREATE EXTENSION pglogical",
                f"SELECT pglogical.create_node(node_name := '{_ident(s.region)}', "
                f"dsn := '{s.endpoint.postgres_dsn()}')",
                _REPSET_TRIGGER,
                *self.schema,
            )
        for target in servers:
            for source in servers:
                if source is target:
                    continue
                via = self.route(self.path("replication", target.region, source.region))
                dsn = DbEndpoint(
                    "postgres", via.host, via.port, SUPERUSER, self.password, DATABASE
                ).postgres_dsn()
                # forward_origins '{}': forward only the provider's own writes, so a write
                # travels one hop to every region and never loops.
                await target.execute(
                    "SELECT pglogical.create_subscription("
                    f"subscription_name := '{_subscription(source.region, target.region)}', "
                    f"provider_dsn := '{dsn}', replication_sets := ARRAY['default'], "
                    "synchronize_structure := false, synchronize_data := false, "
                    "forward_origins := '{}')"
                )
        await until(
            self._all_replicating,
            time_limit=time_limit,
            what="every pglogical subscription to replicate",
            watch=[s.process for s in servers],
            interval=0.2,
        )
        await self._start_exporters(time_limit)

    async def _settings(self) -> set[str]:
        """Names of the settings this PostgreSQL build knows."""
        out = await self.user.run(
            [str(PG_BIN / "postgres"), "--describe-config"], "postgres --describe-config"
        )
        return {line.split("\t", 1)[0] for line in out.splitlines()}

    async def _all_replicating(self) -> bool:
        for server in self.servers.values():
            rows = await server.fetch("SELECT status FROM pglogical.show_subscription_status()")
            if len(rows) != len(self.regions) - 1 or any(
                r["status"] != "replicating" for r in rows
            ):
                return False
        return True

    def databases(self) -> dict[str, RegionDatabase]:
        self._check_regions_started()
        return {r: RegionDatabase(r, s.endpoint, s.endpoint) for r, s in self.servers.items()}


def _ident(region: str) -> str:
    return region.replace("-", "_")


def _subscription(source: str, target: str) -> str:
    return f"{_ident(target)}_from_{_ident(source)}"


__all__ = ["PgServer", "PostgresAA", "PostgresHA", "SystemError_"]
