"""The running operator: the composition root.

:class:`Operator` builds every collaborator once per process, each with exactly what it
needs, and the handlers reach them through it. Nothing below imports this module:

    Scheduler(clock, kube, fire_kube, events, metrics)        GameDay schedules
    RunHistory(kube, metrics, scheduler.active_runs)          after a run
    Orphans(kube, events, config.targets, history)            runs of a dead operator
    RunExecutor(RunServices(config, kube, events, metrics,    the runs of this operator
                            slots, history, scheduler.created),
                scheduler.run_finished)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from chaosaa.kube import load_api_client
from chaosaa.operator.config import OperatorConfig
from chaosaa.operator.events import EventRecorder
from chaosaa.operator.executor import RunExecutor
from chaosaa.operator.history import RunHistory
from chaosaa.operator.kube import Kube
from chaosaa.operator.lease import LeaderLease
from chaosaa.operator.metrics import HealthServer, Metrics
from chaosaa.operator.orphans import Orphans
from chaosaa.operator.runtask import RunServices
from chaosaa.operator.scheduler import Scheduler
from chaosaa.operator.slots import RunSlots
from chaosaa.spec.model import GameDay

#: /healthz fails when the scheduler loop has not ticked for this long (wall seconds)
STALE_AFTER = 60.0
#: threads creating scheduled runs
FIRE_WORKERS = 32


class Operator:
    def __init__(self, config: OperatorConfig, kube: Kube | None = None) -> None:
        self.config = config
        self.kube = kube or Kube(
            load_api_client(config.kubeconfig, config.context), workers=config.api_workers
        )
        #: scheduled runs are created through threads of their own, so that a burst of
        #: slots (many GameDays on one schedule) never queues behind the runs' own calls
        self.fire_kube = Kube(self.kube.api, workers=FIRE_WORKERS, owns_api=False)
        self.metrics = Metrics()
        self.events = EventRecorder(self.kube, config.identity)
        self.scheduler = Scheduler(
            config.clock, self.kube, self.fire_kube, self.events, self.metrics
        )
        # Events wait while the scheduler creates a burst of runs
        self.events.gate = self.scheduler.created
        history = RunHistory(self.kube, self.metrics, self.scheduler.active_runs)
        self.orphans = Orphans(self.kube, self.events, config.targets, history)
        services = RunServices(
            config=config,
            kube=self.kube,
            events=self.events,
            metrics=self.metrics,
            slots=RunSlots(config.max_concurrent_runs),
            history=history,
            burst=self.scheduler.created,
        )
        self.runs = RunExecutor(services, finished=self.scheduler.run_finished)
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
