"""``galera``: a MariaDB Galera cluster, one node per region, each in its own network
namespace (see :mod:`chaosaa.lab.systems.netns` for why not behind link proxies).

Every region writes locally; Galera replicates synchronously (certification) with quorum:
a region cut off from the majority leaves the Primary Component and refuses queries and
writes (``WSREP has not yet prepared node for application use``), flow control slows the
cluster when a node's apply queue grows. Joiners take a full state transfer (rsync SST)
from the bootstrap node, one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import aiomysql
import pymysql

from chaosaa.lab.systems import exporters, netns
from chaosaa.lab.systems._proc import (
    DataRoot,
    ServerProcess,
    ServerUser,
    SystemError_,
    require_binaries,
    until,
)
from chaosaa.lab.systems.base import (
    DatabaseSystem,
    DbEndpoint,
    LagMetric,
    RegionDatabase,
    ReplicationPath,
    default_schema,
)

log = logging.getLogger(__name__)

MARIADBD = os.environ.get("CHAOSAA_MARIADBD", "mariadbd")
INSTALL_DB = os.environ.get("CHAOSAA_MARIADB_INSTALL_DB", "mariadb-install-db")
GALERA_PROVIDER = os.environ.get("CHAOSAA_GALERA_PROVIDER", "/usr/lib/galera/libgalera_smm.so")
DATABASE = "chaosaa"
USER = "chaosaa"
#: every node listens on the same ports: each has a namespace (and an address) of its own
PORT, GCOMM_PORT, IST_PORT, SST_PORT = 3306, 4567, 4568, 4444
#: ER_UNKNOWN_COM_ERROR as Galera uses it: "WSREP has not yet prepared node for application use"
_WSREP_NOT_READY = 1047


class Galera(DatabaseSystem):
    name: ClassVar[str] = "galera"
    kind = "mysql"
    routing = "netns"
    ready_query: ClassVar[str | None] = "mysql_global_status_wsrep_ready"
    replication_ports: ClassVar[tuple[int, ...]] = (GCOMM_PORT, IST_PORT, SST_PORT)
    #: transactions certification refused or aborted for a conflicting write elsewhere
    conflicts_query: ClassVar[str | None] = (
        "sum(mysql_global_status_wsrep_local_cert_failures)"
        " + sum(mysql_global_status_wsrep_local_bf_aborts)"
    )
    description: ClassVar[str] = (
        "MariaDB Galera cluster, one node per region, every region writable; quorum: a "
        "minority region refuses writes"
    )
    lag_metrics: ClassVar[tuple[LagMetric, ...]] = (
        LagMetric(
            "mysql_global_status_wsrep_local_recv_queue",
            "transactions",
            "write sets received but not yet applied on this node (apply lag)",
        ),
        LagMetric(
            "mysql_global_status_wsrep_local_send_queue",
            "transactions",
            "write sets waiting to be sent from this node (a slow or cut link)",
        ),
        LagMetric(
            "mysql_global_status_wsrep_flow_control_paused",
            "ratio",
            "share of time replication was paused by flow control since the last FLUSH STATUS",
        ),
        LagMetric(
            "mysql_global_status_wsrep_ready",
            "boolean",
            "1 while the node is in the Primary Component and accepts queries; a cut-off "
            "minority shows 0 (its data then ages with no lag figure: use canary lag)",
        ),
    )

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
        self.user = ServerUser.for_service("mysql")
        self.password = secrets.token_hex(12)
        self._data_base = data_base
        self.network = netns.RegionNetwork(self.regions)

    @classmethod
    def unavailable(cls) -> str | None:
        return netns.unavailable() or require_binaries(
            [
                MARIADBD,
                INSTALL_DB,
                GALERA_PROVIDER,
                "rsync",
                "setpriv",
                exporters.MYSQLD_EXPORTER,
            ]
        )

    def paths(self) -> list[ReplicationPath]:
        # No proxied paths: peers learn each other's real addresses, so faults act on the
        # namespaces (node rules), never on a proxy.
        return []

    def namespaces(self) -> dict[str, netns.RegionNamespace]:
        return dict(self.network.namespaces)

    def leftovers(self) -> dict[str, list[str]]:
        return {**super().leftovers(), "namespaces": self.network.created}

    def _endpoint(self, region: str) -> DbEndpoint:
        ip = self.network.namespaces[region].ip
        return DbEndpoint("mysql", ip, PORT, USER, self.password, DATABASE)

    def _socket(self, region: str) -> Path:
        assert self.root is not None
        return self.root.path / region / "mysqld.sock"

    def _config(self, region: str) -> Path:
        assert self.root is not None
        ns = self.network.namespaces[region]
        peers = ",".join(n.ip for n in self.network.namespaces.values())
        data = self.root.path / region
        conf = self.root.path / f"{region}.cnf"
        provider_options = ";".join(
            [
                f"gmcast.listen_addr=tcp://{ns.ip}:{GCOMM_PORT}",
                f"ist.recv_addr={ns.ip}:{IST_PORT}",
                "gcache.size=64M",
                # Notice a cut-off peer in seconds, not the default tens of seconds.
                "evs.suspect_timeout=PT3S",
                "evs.inactive_timeout=PT6S",
                "evs.install_timeout=PT4S",
            ]
        )
        conf.write_text(
            "\n".join(
                [
                    "[mysqld]",
                    f"datadir={data}",
                    f"socket={self._socket(region)}",
                    f"pid-file={data}/mysqld.pid",
                    f"bind-address={ns.ip}",
                    f"port={PORT}",
                    "skip-name-resolve",
                    "log-error=",  # to stderr: the process log
                    "binlog_format=ROW",
                    "default_storage_engine=InnoDB",
                    "innodb_autoinc_lock_mode=2",
                    "innodb_buffer_pool_size=32M",
                    "innodb_log_file_size=16M",
                    "performance_schema=OFF",
                    "wsrep_on=ON",
                    f"wsrep_provider={GALERA_PROVIDER}",
                    "wsrep_cluster_name=chaosaa",
                    f"wsrep_cluster_address=gcomm://{peers}",
                    f"wsrep_node_name={region}",
                    f"wsrep_node_address={ns.ip}",
                    "wsrep_sst_method=rsync",
                    f"wsrep_sst_receive_address={ns.ip}:{SST_PORT}",
                    f'wsrep_provider_options="{provider_options}"',
                    "",
                ]
            )
        )
        self.user.chown(conf)
        return conf

    async def _start(self, time_limit: float) -> None:
        await self.network.create()
        self.root = DataRoot(self.user, "chaosaa-galera-", self._data_base)
        template = self.root.path / "template"
        await self.user.run(
            [
                INSTALL_DB,
                "--no-defaults",
                f"--datadir={template}",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
                "--skip-name-resolve",
            ],
            "mariadb-install-db",
            time_limit=time_limit,
        )
        for region in self.regions:
            # Joiners are overwritten by their state transfer; a valid datadir lets them start.
            await asyncio.to_thread(
                shutil.copytree, template, self.root.path / region, symlinks=True
            )
            await asyncio.to_thread(_chown_tree, self.root.path / region, self.user)
        first, *joiners = self.regions
        await self._start_node(first, time_limit, bootstrap=True)
        await self._bootstrap_sql(first)
        for region in joiners:
            # One joiner at a time: concurrent joins race for the donor (and gcomm ids).
            await self._start_node(region, time_limit, bootstrap=False)
        await self._start_exporters(time_limit)

    async def _start_node(self, region: str, time_limit: float, *, bootstrap: bool) -> None:
        argv = [MARIADBD, f"--defaults-file={self._config(region)}"]
        if bootstrap:
            argv.append("--wsrep-new-cluster")
        proc = ServerProcess(
            f"mariadb-{region}",
            argv,
            self.user,
            self.log_dir / f"mariadb-{region}.log",
            netns=self.network.namespaces[region].netns,
        )
        self._add_process(region, proc)
        await proc.start()

        async def synced() -> bool:
            rows = await self._root_query(region, "SHOW STATUS LIKE 'wsrep_local_state_comment'")
            return bool(rows) and rows[0][1] == "Synced"

        await until(
            synced,
            time_limit=time_limit,
            what=f"mariadb-{region} to be Synced",
            watch=[proc],
            interval=0.2,
        )

    async def _root_query(self, region: str, sql: str) -> list[tuple[Any, ...]]:
        """A query as the local root over the node's Unix socket (no network needed)."""
        conn = await aiomysql.connect(
            unix_socket=str(self._socket(region)), user="root", password="", connect_timeout=2
        )
        try:
            async with conn.cursor() as cur:
                await cur.execute(sql)
                rows: list[tuple[Any, ...]] = list(await cur.fetchall())
            return rows
        finally:
            conn.close()

    async def _bootstrap_sql(self, region: str) -> None:
        for sql in [
            f"CREATE DATABASE IF NOT EXISTS {DATABASE}",
            f"CREATE USER IF NOT EXISTS '{USER}'@'%' IDENTIFIED BY '{self.password}'",
            f"GRANT ALL ON *.* TO '{USER}'@'%'",
        ]:
            await self._root_query(region, sql)
        for sql in self.schema:
            await self._schema(region, sql)

    async def _schema(self, region: str, sql: str) -> None:
        conn = await aiomysql.connect(
            unix_socket=str(self._socket(region)),
            user="root",
            password="",
            db=DATABASE,
            connect_timeout=2,
        )
        try:
            async with conn.cursor() as cur:
                await cur.execute(sql)
            await conn.commit()
        finally:
            conn.close()

    async def _start_exporters(self, time_limit: float) -> None:
        if not self.with_exporters:
            return
        assert self.root is not None
        started = []
        for region in self.regions:
            proc, exp = exporters.mysqld_exporter(
                region, self._endpoint(region), self.user, self.log_dir, self.root.path
            )
            self._add_process(region, proc)
            await proc.start()
            self.exporters[region] = exp
            started.append((proc, exp))
        await asyncio.gather(
            *(exporters.wait_ready(p, e, "mysql_up", time_limit) for p, e in started)
        )

    async def _stop(self) -> None:
        await self._stop_processes()
        self.exporters.clear()
        if self.root is not None:
            self.root.remove()
            self.root = None
        await self.network.destroy()

    def databases(self) -> dict[str, RegionDatabase]:
        self._check_regions_started()
        return {r: RegionDatabase(r, self._endpoint(r), self._endpoint(r)) for r in self.regions}

    async def ready(self, region: str) -> bool:
        """Whether the region's node is in the Primary Component and serves queries."""
        try:
            return await self.status(region, "wsrep_ready") == "ON"
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] == _WSREP_NOT_READY:
                return False
            raise

    async def status(self, region: str, name: str) -> str | None:
        """One ``wsrep_*`` status variable of a region's node (over its Unix socket)."""
        rows = await self._root_query(region, f"SHOW STATUS LIKE '{name}'")
        return str(rows[0][1]) if rows else None


def _chown_tree(path: Path, user: ServerUser) -> None:
    user.chown(path)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            user.chown(Path(dirpath) / name)


__all__ = ["Galera", "SystemError_"]
