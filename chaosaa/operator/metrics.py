"""``/metrics`` (Prometheus) and ``/healthz`` (liveness) of the operator, on one port."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger(__name__)


class Metrics:
    """The operator's metrics, in a registry of their own (not the process-global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["namespace", "gameday"]
        self.runs_total = Counter(
            "chaosaa_runs_total",
            "Finished GameDay runs by verdict (passed, failed, aborted, error, interrupted).",
            [*labels, "verdict"],
            registry=self.registry,
        )
        self.failover_seconds = Gauge(
            "chaosaa_failover_seconds",
            "Failover time the last run of a GameDay measured (failoverTime SLO).",
            labels,
            registry=self.registry,
        )
        self.lag_peak_seconds = Gauge(
            "chaosaa_replication_lag_peak_seconds",
            "Peak replication lag the last run of a GameDay measured (replicationLag SLO).",
            labels,
            registry=self.registry,
        )
        self.faults_active = Gauge(
            "chaosaa_faults_active",
            "Faults in place right now (requested and not yet reverted).",
            labels,
            registry=self.registry,
        )
        self.runs_running = Gauge(
            "chaosaa_runs_running",
            "Runs this operator is executing right now.",
            registry=self.registry,
        )
        self.schedule_delay = Histogram(
            "chaosaa_schedule_delay_seconds",
            "From a cron slot to its run being created.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.missed_slots = Counter(
            "chaosaa_missed_schedules_total",
            "Slots that never ran: too old to start (startingDeadlineSeconds) or superseded.",
            labels,
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """aiohttp app: ``GET /metrics`` and ``GET /healthz``.

    ``/healthz`` answers 200 while ``alive()`` holds (the scheduler loop ticked recently),
    503 otherwise, with a small JSON body saying why.
    """

    def __init__(self, metrics: Metrics, alive: Callable[[], tuple[bool, dict[str, object]]]):
        self.metrics = metrics
        self.alive = alive
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("metrics and health on http://%s:%s", host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _healthz(self, _: web.Request) -> web.Response:
        ok, detail = self.alive()
        body = json.dumps({"ok": ok, "at": time.time(), **detail})
        return web.Response(text=body, status=200 if ok else 503, content_type="application/json")
