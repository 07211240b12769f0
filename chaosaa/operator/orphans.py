"""Runs left ``Running`` by an operator that is gone: roll their targets back.

What ``chaosaa rollback FILE`` does for the run's GameDay, then the run is marked
``Interrupted`` (a run deleted while no operator ran it is only rolled back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from chaosaa.errors import ChaosaaError
from chaosaa.kube import NotFoundError
from chaosaa.operator import runs
from chaosaa.operator.events import EventRecorder, ObjectRef
from chaosaa.operator.history import RunHistory
from chaosaa.operator.kube import Kube
from chaosaa.operator.kubeconfigs import read_kubeconfigs
from chaosaa.spec.model import GameDay
from chaosaa.spec.status import GameDayRunStatus
from chaosaa.targets.base import TargetOptions, target_for

log = logging.getLogger(__name__)

#: how long a target rollback may take
ROLLBACK_TIMEOUT = 60.0


class Orphans:
    def __init__(
        self, kube: Kube, events: EventRecorder, targets: TargetOptions, history: RunHistory
    ) -> None:
        self.kube = kube
        self.events = events
        self.targets = targets  # the operator's target flags
        self.history = history

    async def recover(self, body: Mapping[str, Any], reason: str, *, mark: bool = True) -> None:
        """A run left ``Running`` by an operator that is gone: revert whatever it may have
        left on its target (``target.rollback()``), then mark it ``Interrupted``."""
        namespace, name = runs.key(body)
        ref = ObjectRef.of(body)
        removed: list[str] = []
        problem: str | None = None
        try:
            gameday = runs.run_gameday(body)
            removed = await asyncio.wait_for(
                self._rollback(namespace, name, gameday), ROLLBACK_TIMEOUT
            )
        except TimeoutError:
            problem = f"rollback did not finish within {ROLLBACK_TIMEOUT:g}s"
        except ChaosaaError as exc:
            problem = f"rollback failed: {exc}"
        detail = "; ".join(removed) if removed else "nothing found to revert"
        message = f"{reason}; rolled back its target: {detail}"
        if problem:
            message = f"{reason}; {problem} (the faults' TTLs revert them)"
        log.warning("run %s/%s: %s", namespace, name, message)
        self.events.warning(ref, "Interrupted", message)
        if not mark:
            return
        status = GameDayRunStatus(
            phase="Interrupted",
            verdict="interrupted",
            reason=message,
            finished_at=runs.rfc3339_ms(time.time()),
            rolled_back=removed,
        )
        try:
            await self.kube.patch_status(
                runs.GAMEDAYRUNS, namespace, name, runs.status_patch(status, currentPhase=None)
            )
        except NotFoundError:
            return
        await self.history.record_finished(body, status)

    async def _rollback(self, namespace: str, name: str, gameday: GameDay) -> list[str]:
        creds = await read_kubeconfigs(self.kube, namespace, gameday)
        try:
            # what `chaosaa rollback FILE` passes: clean this GameDay's target
            options = creds.target_options(
                replace(self.targets, ephemeral=False),
                name,
                namespace,
                rollback=True,
                all=False,
            )
            target = target_for(gameday.spec.target, options)
            try:
                await target.open()
                removed = await target.rollback()
                # the dead run's target lease (holder: the run) would block the next run
                with contextlib.suppress(ChaosaaError):
                    await target.release_lease(name)
                return removed
            finally:
                await target.close()
        finally:
            creds.cleanup()
