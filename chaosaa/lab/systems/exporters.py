"""The real Prometheus exporters of the database systems, one per region.

``prometheus-postgres-exporter`` and ``prometheus-mysqld-exporter`` (Debian packages) run
on a free port on 127.0.0.1 each, as the server user, and are ready when their ``/metrics``
says the database is up (``pg_up 1`` / ``mysql_up 1``).
"""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp

from chaosaa.lab.systems._proc import HOST, ServerProcess, ServerUser, free_port, until
from chaosaa.lab.systems.base import DbEndpoint, Exporter

POSTGRES_EXPORTER = os.environ.get("CHAOSAA_POSTGRES_EXPORTER", "prometheus-postgres-exporter")
MYSQLD_EXPORTER = os.environ.get("CHAOSAA_MYSQLD_EXPORTER", "prometheus-mysqld-exporter")


#: Debian's postgres_exporter 0.11 has no replication-lag metric built in; its shipped
#: example queries.yaml defines ``pg_replication_lag`` with this query (seconds since the
#: last replayed commit on a standby, 0 on a primary).
PG_QUERIES = """pg_replication:
  query: >-
    SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0 ELSE GREATEST (0,
    EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))) END AS lag
  master: true
  metrics:
    - lag:
        usage: "GAUGE"
        description: "Replication lag behind the primary in seconds"
"""


def postgres_exporter(
    region: str, db: DbEndpoint, user: ServerUser, log_dir: Path, conf_dir: Path
) -> tuple[ServerProcess, Exporter]:
    port = free_port()
    queries = conf_dir / "postgres-exporter-queries.yaml"
    queries.write_text(PG_QUERIES)
    user.chown(queries)
    dsn = (
        f"postgresql://{db.user}:{db.password}@{db.host}:{db.port}/{db.database}"
        "?sslmode=disable&connect_timeout=2"
    )
    proc = ServerProcess(
        f"postgres-exporter-{region}",
        [
            POSTGRES_EXPORTER,
            f"--web.listen-address={HOST}:{port}",
            f"--extend.query-path={queries}",
            "--log.level=warn",
        ],
        user,
        log_dir / f"postgres-exporter-{region}.log",
        env={"DATA_SOURCE_NAME": dsn},
    )
    return proc, Exporter(region, f"http://{HOST}:{port}", "chaosaa-db-exporter")


def mysqld_exporter(
    region: str, db: DbEndpoint, user: ServerUser, log_dir: Path, conf_dir: Path
) -> tuple[ServerProcess, Exporter]:
    port = free_port()
    cnf = conf_dir / f"exporter-{region}.cnf"
    cnf.write_text(
        f"[client]\nuser={db.user}\npassword={db.password}\nhost={db.host}\nport={db.port}\n"
    )
    cnf.chmod(0o600)
    user.chown(cnf)
    proc = ServerProcess(
        f"mysqld-exporter-{region}",
        [
            MYSQLD_EXPORTER,
            f"--web.listen-address={HOST}:{port}",
            f"--config.my-cnf={cnf}",
            "--log.level=warn",
        ],
        user,
        log_dir / f"mysqld-exporter-{region}.log",
    )
    return proc, Exporter(region, f"http://{HOST}:{port}", "chaosaa-db-exporter")


async def wait_ready(
    proc: ServerProcess, exporter: Exporter, up_metric: str, time_limit: float
) -> None:
    """Wait until the exporter serves ``/metrics`` and reports ``<up_metric> 1``."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:

        async def up() -> bool:
            async with session.get(f"{exporter.url}/metrics") as resp:
                text = await resp.text()
            return resp.status == 200 and f"\n{up_metric} 1" in f"\n{text}"

        await until(
            up, time_limit=time_limit, what=f"{proc.name} to report {up_metric} 1", watch=[proc]
        )
