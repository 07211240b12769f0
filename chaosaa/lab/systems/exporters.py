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


def postgres_exporter(
    region: str, db: DbEndpoint, user: ServerUser, log_dir: Path
) -> tuple[ServerProcess, Exporter]:
    port = free_port()
    dsn = (
        f"postgresql://{db.user}:{db.password}@{db.host}:{db.port}/{db.database}"
        "?sslmode=disable&connect_timeout=2"
    )
    proc = ServerProcess(
        f"postgres-exporter-{region}",
        [POSTGRES_EXPORTER, f"--web.listen-address={HOST}:{port}", "--log.level=warn"],
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
