"""The running operator: the objects every handler works with, built once per process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from chaosaa.errors import ChaosaaError
from chaosaa.kube import NotFoundError, load_api_client
from chaosaa.operator import runs
from chaosaa.operator.config import OperatorConfig
from chaosaa.operator.events import EventRecorder
from chaosaa.operator.executor import RunExecutor
from chaosaa.operator.kube import Kube
from chaosaa.operator.lease import LeaderLease
from chaosaa.operator.metrics import HealthServer, Metrics
from chaosaa.operator.scheduler import Scheduler
from chaosaa.spec.model import GameDay

log = logging.getLogger(__name__)

#: /healthz fails when the scheduler loop has not ticked for this long (wall seconds)
STALE_AFTER = 60.0
#: threads creating scheduled runs
FIRE_WORKERS = 32


class Operator:
    def __init__(self, config: OperatorConfig, kube: Kube | None = None) -> None:
        self.config = config
        self.clock = config.clock
        self.kube = kube or Kube(
            load_api_client(config.kubeconfig, config.context), workers=config.api_workers
        )
        #: scheduled runs are created through threads of their own, so that a burst of
        #: slots (many GameDays on one schedule) never queues behind the runs' own calls
        self.fire_kube = Kube(self.kube.api, workers=FIRE_WORKERS, owns_api=False)
        self.metrics = Metrics()
        self.events = EventRecorder(self.kube, config.identity)
        self.runs = RunExecutor(self)
        self.scheduler = Scheduler(self)
        self.events.gate = self.scheduler.created
        self.lease: LeaderLease | None = None
        if config.lease and config.lease_namespace:
            self.lease = LeaderLease(
                self.kube,
                config.lease_namespace,
                config.lease_name,
                config.identity,
                duration=config.lease_duration,
            )
        self.health: HealthServer | None = None
        #: set to stop kopf (the lease was lost). An asyncio.Event: kopf waits for a
        #: threading.Event in a worker thread that would keep the process from exiting
        self.stop_flag = asyncio.Event()
        #: GameDay validation results by (uid, generation): validating 500 specs on every
        #: status change would be wasted work
        self.validated: dict[str, tuple[int, GameDay | None, str | None]] = {}
        #: tasks to cancel at shutdown (the lease keeper)
        self.background: list[asyncio.Task[Any]] = []

    def alive(self) -> tuple[bool, dict[str, object]]:
        age = time.monotonic() - self.scheduler.heartbeat
        ok = self.scheduler.running and age < STALE_AFTER
        if self.lease is not None and not self.lease.held:
            ok = False
        return ok, {
            "scheduler": "running" if self.scheduler.running else "stopped",
            "schedulerTickAgeSeconds": round(age, 1),
            "leader": self.lease.held if self.lease is not None else None,
            "gamedays": len(self.scheduler.entries),
            "runs": len(self.runs.tasks),
        }

    async def patch_gameday_status(
        self, namespace: str, name: str, fields: Mapping[str, Any]
    ) -> bool:
        """Merge ``fields`` into a GameDay's status; False if that failed (gone already:
        nothing to do, True)."""
        try:
            await self.kube.patch_status(runs.GAMEDAYS, namespace, name, {"status": dict(fields)})
        except NotFoundError:
            return True
        except ChaosaaError as exc:
            log.warning("GameDay %s/%s: status not written: %s", namespace, name, exc)
            return False
        return True
