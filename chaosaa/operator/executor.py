"""GameDayRuns executed by the same engine as ``chaosaa run``, as tasks of the operator.

Each run is an asyncio task in kopf's event loop (the engine is async throughout), tracked
here by (namespace, name); :class:`~chaosaa.operator.runtask.RunTask` is its life.

Cancelling the task (the run was deleted, the operator stops) cancels the engine, which
reverts every fault before it returns. A run found ``Running`` that no task of this
operator owns was left by an operator that died: :mod:`chaosaa.operator.orphans` rolls
it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from chaosaa.operator import runs
from chaosaa.operator.runtask import ABORT_TIMEOUT, RunServices, RunTask

log = logging.getLogger(__name__)

Key = tuple[str, str]


class RunExecutor:
    """The runs this operator executes, by (namespace, name)."""

    def __init__(self, services: RunServices, finished: Callable[[str, str], None]) -> None:
        self.services = services
        #: told (namespace, GameDay) when a run ends: a slot waiting under Forbid may go
        self.finished = finished
        self.tasks: dict[Key, RunTask] = {}

    # ------------------------------------------------------------------ tasks

    def owns(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.tasks

    def start(self, body: Mapping[str, Any]) -> None:
        """Execute a run in the background (idempotent per run)."""
        key = runs.key(body)
        if key in self.tasks:
            return
        run = RunTask(self.services, body)
        self.tasks[key] = run
        self.services.metrics.runs_running.set(len(self.tasks))
        run.task = asyncio.create_task(self._guard(run), name=f"run:{key[0]}/{key[1]}")

    async def _guard(self, run: RunTask) -> None:
        try:
            await run.main()
        except Exception:
            log.exception("run %s/%s failed unexpectedly", run.namespace, run.name)
        finally:
            self.tasks.pop((run.namespace, run.name), None)
            self.services.metrics.runs_running.set(len(self.tasks))
            self.finished(run.namespace, run.gameday)

    async def stop(self, namespace: str, name: str, reason: str, phase: str = "Aborted") -> bool:
        """Cancel a run of ours and wait until the engine reverted its faults."""
        run = self.tasks.get((namespace, name))
        if run is None or run.task is None:
            return False
        run.stop(reason, phase)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(run.task), ABORT_TIMEOUT)
        return True

    async def shutdown(self, reason: str) -> None:
        """Operator stopping: every run of ours ends Interrupted, its faults reverted."""
        await asyncio.gather(
            *(self.stop(ns, name, reason, phase="Interrupted") for ns, name in list(self.tasks)),
            return_exceptions=True,
        )
