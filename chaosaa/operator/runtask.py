"""One GameDayRun executed by this operator: wait for a slot, claim, run, write status.

The run's life (see :mod:`chaosaa.operator.executor` for the runs as a whole):

1. claim: ``status.phase`` → ``Running`` with a resourceVersion precondition, so two
   operators can never both start it (``Pending`` while ``--max-concurrent-runs`` are busy);
2. ``await Run(gameday, options, progress).execute()`` — phases and faults become
   Kubernetes Events, ``chaosaa_faults_active`` follows the faults;
3. the report becomes ``status`` (verdict, per-fault and per-SLO results, summary), the
   GameDay's ``status.lastRun`` and the metrics; old runs beyond the history limits go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chaosaa.engine.outcome import RunOutcome
from chaosaa.engine.reporting import build_report
from chaosaa.engine.run import Run
from chaosaa.engine.verdict import VERDICTS, stop_code
from chaosaa.errors import ChaosaaError, SpecError
from chaosaa.kube import ConflictError, NotFoundError
from chaosaa.operator import runs
from chaosaa.operator.config import OperatorConfig
from chaosaa.operator.events import EventRecorder, ObjectRef
from chaosaa.operator.history import RunHistory
from chaosaa.operator.kube import Kube
from chaosaa.operator.kubeconfigs import RunCredentials, read_kubeconfigs
from chaosaa.operator.metrics import Metrics
from chaosaa.operator.progress import RunProgress
from chaosaa.operator.slots import RunSlots
from chaosaa.spec.status import TERMINAL_PHASES, GameDayRunStatus
from chaosaa.targets.base import TargetOptions

log = logging.getLogger(__name__)

#: how long deleting a running run may wait for the engine to revert its faults
ABORT_TIMEOUT = 120.0
CLAIM_ATTEMPTS = 5
#: the longest a new run waits for the scheduler to finish creating a burst of runs
BURST_WAIT = 10.0
#: a run waiting for a free slot longer than this is marked Pending
PENDING_AFTER = 1.0


@dataclass(frozen=True)
class RunServices:
    """What every run needs from the operator, built once by :class:`~.state.Operator`."""

    config: OperatorConfig
    kube: Kube
    events: EventRecorder
    metrics: Metrics
    slots: RunSlots
    history: RunHistory
    #: set while the scheduler is not creating runs: a burst of runs is created first
    burst: asyncio.Event


class RunTask:
    """One GameDayRun being executed by this operator."""

    def __init__(self, services: RunServices, body: Mapping[str, Any]) -> None:
        self.services = services
        self.body = dict(body)
        self.namespace, self.name = runs.key(body)
        self.gameday = str((body.get("spec") or {}).get("gameDay", ""))
        self.ref = ObjectRef.of(body)
        self.run: Run | None = None
        self.stop_reason: str | None = None
        self.stop_phase = "Aborted"
        self.task: asyncio.Task[None] | None = None

    def stop(self, reason: str, phase: str) -> None:
        """Cancel the run: the engine reverts its faults and returns its outcome, which
        ends in ``phase`` (Aborted, Interrupted)."""
        self.stop_reason, self.stop_phase = reason, phase
        if self.run is not None and self.run.started:
            self.run.stop(reason, reason=reason)
        elif self.task is not None:
            self.task.cancel()  # the engine has not started: nothing to revert

    # ------------------------------------------------------------------ status

    async def patch_status(
        self, fields: Mapping[str, Any], *, resource_version: str | None = None, quiet: bool = False
    ) -> dict[str, Any] | None:
        try:
            return await self.services.kube.patch_status(
                runs.GAMEDAYRUNS,
                self.namespace,
                self.name,
                {"status": dict(fields)},
                resource_version=resource_version,
            )
        except ConflictError:
            raise
        except NotFoundError:
            return None
        except ChaosaaError as exc:
            if not quiet:
                raise
            log.warning("run %s/%s: status not written: %s", self.namespace, self.name, exc)
            return None

    # ------------------------------------------------------------------ life

    async def main(self) -> None:
        started = False
        try:
            await self._after_burst()
            if not await self._wait_for_slot():
                return
            started = True
            if not await self._claim():
                return
            await self._execute()
        finally:
            if started:
                self.services.slots.release()

    async def _after_burst(self) -> None:
        """Let the scheduler create a burst of runs first (bounded: it never waits long)."""
        created = asyncio.ensure_future(self.services.burst.wait())
        try:
            await asyncio.wait({created}, timeout=BURST_WAIT)
        finally:
            created.cancel()

    async def _wait_for_slot(self) -> bool:
        slots = self.services.slots
        if slots.try_take():
            return True
        # a burst of runs (many GameDays on one schedule) usually clears within a second;
        # only a longer wait is worth a status write and an Event per run
        waiting = asyncio.ensure_future(slots.wait())
        try:
            done, _ = await asyncio.wait({waiting}, timeout=PENDING_AFTER)
            if not done:
                await self.patch_status(
                    {
                        "phase": "Pending",
                        "reason": f"waiting: {slots.limit} runs are running",
                    },
                    quiet=True,
                )
                self.services.events.normal(self.ref, "Pending", "waiting for a free run slot")
            await waiting
        except asyncio.CancelledError:
            if waiting.done() and not waiting.cancelled():
                slots.release()  # got one just as we were stopped
            waiting.cancel()
            raise
        return True

    async def _claim(self) -> bool:
        body = self.body
        for _ in range(CLAIM_ATTEMPTS):
            status = body.get("status") or {}
            phase = status.get("phase")
            if phase in TERMINAL_PHASES or (phase == "Running" and status.get("operator")):
                log.info(
                    "run %s/%s is %s already: not starting it", self.namespace, self.name, phase
                )
                return False
            try:
                await self.patch_status(
                    {
                        "phase": "Running",
                        "operator": self.services.config.identity,
                        "startedAt": runs.rfc3339(time.time()),
                        "reason": None,
                    },
                    resource_version=body["metadata"].get("resourceVersion"),
                )
                self.services.events.normal(
                    self.ref, "Running", f"started by {self.services.config.identity}"
                )
                return True
            except ConflictError:
                fresh = await self.services.kube.get(runs.GAMEDAYRUNS, self.namespace, self.name)
                if fresh is None:
                    return False
                body = self.body = fresh
        log.warning("run %s/%s: could not claim it (conflicts)", self.namespace, self.name)
        return False

    async def _execute(self) -> None:
        creds = RunCredentials()
        progress = self._progress()
        status: GameDayRunStatus
        try:
            gameday = runs.run_gameday(self.body)
            creds = await read_kubeconfigs(self.services.kube, self.namespace, gameday)
            if self.stop_reason is not None:
                raise asyncio.CancelledError
            self.run = Run(gameday, self._options(creds), progress)
            outcome = await self._engine(self.run)
            report = build_report(outcome)
            status = runs.status_from_report(report)
            if self.stop_reason is not None:
                status.phase, status.verdict = self.stop_phase, self._stop_verdict()
                status.reason = self.stop_reason
        except SpecError as exc:
            status = _error_status(exc, f"invalid GameDay: {exc}")
        except ChaosaaError as exc:
            status = _error_status(exc, str(exc))
        except asyncio.CancelledError:
            # stopped before the engine started: nothing was injected
            status = GameDayRunStatus(
                phase=self.stop_phase, verdict=self._stop_verdict(), reason=self.stop_reason
            )
        finally:
            creds.cleanup()
            await progress.settle()
        status.finished_at = status.finished_at or runs.rfc3339_ms(time.time())
        await self._finish(status)

    async def _engine(self, run: Run) -> RunOutcome:
        """The engine in a task of its own (:meth:`Run.start`): ``stop`` stops it the way
        SIGINT does for ``chaosaa run``; the engine reverts every fault and returns."""
        inner = run.start()
        try:
            return await asyncio.shield(inner)
        except asyncio.CancelledError as exc:
            # cancelled before it started, or during its (shielded) cleanup: the outcome
            # recorded so far is what there is
            if not inner.done():
                inner.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(inner, ABORT_TIMEOUT)
            outcome = run.outcome
            outcome.stopped = stop_code(exc)
            outcome.reason = outcome.reason or self.stop_reason or "cancelled"
            outcome.finished_at = outcome.finished_at or time.time()
            return outcome

    def _stop_verdict(self) -> Any:
        return "interrupted" if self.stop_phase == "Interrupted" else "aborted"

    def _options(self, creds: RunCredentials) -> TargetOptions:
        return creds.target_options(self.services.config.targets, self.name, self.namespace)

    def _progress(self) -> RunProgress:
        s = self.services
        return RunProgress(
            s.events,
            self.ref,
            s.metrics.faults_active.labels(self.namespace, self.gameday),
            lambda phase: self.patch_status({"currentPhase": phase}, quiet=True),
        )

    async def _finish(self, status: GameDayRunStatus) -> None:
        patch = runs.status_patch(status, currentPhase=None)
        await self.patch_status(patch["status"], quiet=True)
        verdict = status.verdict or "error"
        message = f"{status.phase}: verdict {verdict}"
        if status.failover_seconds is not None:
            message += f", failover {status.failover_seconds:.3f}s"
        if status.reason:
            message += f" ({status.reason})"
        if status.phase == "Succeeded":
            self.services.events.normal(self.ref, "Succeeded", message)
        else:
            self.services.events.warning(self.ref, status.phase or "Error", message)
        await self.services.history.record_finished(self.body, status)


def _error_status(exc: ChaosaaError, reason: str) -> GameDayRunStatus:
    """A run that failed before the engine started (invalid GameDay, credentials)."""
    code = stop_code(exc)
    verdict = VERDICTS[code]
    return GameDayRunStatus(
        phase=runs.PHASES[verdict], verdict=verdict, reason=reason, exit_code=int(code)
    )
