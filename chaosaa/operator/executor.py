"""GameDayRuns executed by the same engine as ``chaosaa run``, as tasks of the operator.

Each run is an asyncio task in kopf's event loop (the engine is async throughout), tracked
here by (namespace, name). Its life:

1. claim: ``status.phase`` → ``Running`` with a resourceVersion precondition, so two
   operators can never both start it (``Pending`` while ``--max-concurrent-runs`` are busy);
2. ``await Run(gameday, options, progress).execute()`` — phases and faults become
   Kubernetes Events, ``chaosaa_faults_active`` follows the faults;
3. the report becomes ``status`` (verdict, per-fault and per-SLO results, summary), the
   GameDay's ``status.lastRun`` and the metrics; old runs beyond the history limits go.

Cancelling the task (the run was deleted, the operator stops) cancels the engine, which
reverts every fault before it returns. A run found ``Running`` that no task of this
operator owns was left by an operator that died: it is rolled back with
``target.rollback()`` (what ``chaosaa rollback`` does) and marked ``Interrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chaosaa.engine.outcome import RunOutcome
from chaosaa.engine.reporting import build_report
from chaosaa.engine.run import Run
from chaosaa.engine.verdict import VERDICTS, stop_code
from chaosaa.errors import ChaosaaError, SpecError
from chaosaa.operator import runs
from chaosaa.operator.events import ObjectRef
from chaosaa.operator.kube import ConflictError, NotFoundError
from chaosaa.operator.kubeconfigs import RunCredentials, read_kubeconfigs
from chaosaa.spec.crd import TERMINAL_PHASES, GameDayRunStatus, LastRun
from chaosaa.spec.model import GameDay
from chaosaa.targets.base import TargetOptions, target_for

if TYPE_CHECKING:
    from chaosaa.operator.state import Operator

log = logging.getLogger(__name__)

Key = tuple[str, str]

#: how long deleting a running run may wait for the engine to revert its faults
ABORT_TIMEOUT = 120.0
#: how long a target rollback may take
ROLLBACK_TIMEOUT = 60.0
CLAIM_ATTEMPTS = 5
#: status.currentPhase is written at most this often (seconds)
PHASE_WRITES = 1.0
#: the longest a new run waits for the scheduler to finish creating a burst of runs
BURST_WAIT = 10.0
#: a run waiting for a free slot longer than this is marked Pending
PENDING_AFTER = 1.0


def _camel(phase: str) -> str:
    return "".join(part.capitalize() for part in phase.replace("_", "-").split("-"))


class RunProgress:
    """The engine's Progress protocol, as Events on the run and a status field."""

    def __init__(self, task: RunTask) -> None:
        self.task = task
        self.active_faults: set[str] = set()
        self.current: str | None = None
        self._writer: asyncio.Task[None] | None = None

    def phase(self, name: str, detail: str = "") -> None:
        op = self.task.op
        op.events.normal(self.task.ref, f"Phase{_camel(name)}", detail or name)
        self.current = name
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_phase())

    async def _write_phase(self) -> None:
        """``status.currentPhase``, at most once per PHASE_WRITES seconds: a run that
        fails in preflight within milliseconds costs no status write for it."""
        written = None
        while True:
            await asyncio.sleep(PHASE_WRITES)
            if self.current != written:
                written = self.current
                await self.task.patch_status({"currentPhase": written}, quiet=True)

    def event(self, at: float, event: str, detail: dict[str, Any]) -> None:
        ev = self.task.op.events
        ref = self.task.ref
        fault = str(detail.get("fault", ""))
        if event == "fault.requested":
            self._fault_active(fault, True)
            ev.normal(ref, "FaultRequested", f"injecting {fault} ({detail.get('type')})")
        elif event == "fault.effective":
            ms = float(detail.get("timeToEffectSeconds", 0)) * 1000
            ev.normal(ref, "FaultEffective", f"fault {fault} in place after {ms:.0f} ms")
        elif event == "fault.reverted":
            self._fault_active(fault, False)
            ms = float(detail.get("timeToRevertSeconds", 0)) * 1000
            ev.normal(ref, "FaultReverted", f"fault {fault} reverted in {ms:.0f} ms")
        elif event == "fault.revert_failed":
            ev.warning(ref, "RevertFailed", f"fault {fault}: {detail.get('error')}")
        elif event in ("steady.before", "steady.after") and not detail.get("passed"):
            ev.warning(
                ref,
                "SteadyStateNotMet",
                f"{event.split('.')[1]}: {detail.get('check')} = {detail.get('value')}",
            )
        elif event == "slo":
            kind = "Normal" if detail.get("verdict") == "passed" else "Warning"
            ev.post(
                ref,
                kind,
                "SLOEvaluated",
                f"{detail.get('slo')}: measured {detail.get('measured')} "
                f"-> {detail.get('verdict')}",
            )
        elif event == "run.signal":
            ev.warning(ref, "Stopping", f"{detail.get('reason')}: {detail.get('action')}")

    def traffic(self, sent: int, ok: int, errors: int, by_region: dict[str, int]) -> None:
        pass  # numbers go into the final status; per-second Events would be noise

    def _fault_active(self, fault: str, active: bool) -> None:
        if active == (fault in self.active_faults):
            return
        if active:
            self.active_faults.add(fault)
        else:
            self.active_faults.discard(fault)
        gauge = self.task.op.metrics.faults_active.labels(self.task.namespace, self.task.gameday)
        gauge.inc() if active else gauge.dec()

    async def settle(self) -> None:
        """Wait for pending status patches; the faults of a finished run are not active."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        for fault in list(self.active_faults):
            self._fault_active(fault, False)


class RunTask:
    """One GameDayRun being executed by this operator."""

    def __init__(self, op: Operator, body: Mapping[str, Any]) -> None:
        self.op = op
        self.body = dict(body)
        self.namespace, self.name = runs.key(body)
        self.gameday = str((body.get("spec") or {}).get("gameDay", ""))
        self.ref = ObjectRef.of(body)
        self.run: Run | None = None
        self.stop_reason: str | None = None
        self.stop_phase = "Aborted"
        self.task: asyncio.Task[None] | None = None
        self.inner: asyncio.Future[RunOutcome] | None = None

    # ------------------------------------------------------------------ status

    async def patch_status(
        self, fields: Mapping[str, Any], *, resource_version: str | None = None, quiet: bool = False
    ) -> dict[str, Any] | None:
        try:
            return await self.op.kube.patch_status(
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
                self.op.runs.release_slot()

    async def _after_burst(self) -> None:
        """Let the scheduler create a burst of runs first (bounded: it never waits long)."""
        created = asyncio.ensure_future(self.op.scheduler.created.wait())
        try:
            await asyncio.wait({created}, timeout=BURST_WAIT)
        finally:
            created.cancel()

    async def _wait_for_slot(self) -> bool:
        executor = self.op.runs
        if executor.try_slot():
            return True
        # a burst of runs (many GameDays on one schedule) usually clears within a second;
        # only a longer wait is worth a status write and an Event per run
        waiting = asyncio.ensure_future(executor.wait_slot())
        try:
            done, _ = await asyncio.wait({waiting}, timeout=PENDING_AFTER)
            if not done:
                await self.patch_status(
                    {
                        "phase": "Pending",
                        "reason": f"waiting: {self.op.config.max_concurrent_runs} runs are running",
                    },
                    quiet=True,
                )
                self.op.events.normal(self.ref, "Pending", "waiting for a free run slot")
            await waiting
        except asyncio.CancelledError:
            if waiting.done() and not waiting.cancelled():
                executor.release_slot()  # got one just as we were stopped
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
                        "operator": self.op.config.identity,
                        "startedAt": runs.rfc3339(time.time()),
                        "reason": None,
                    },
                    resource_version=body["metadata"].get("resourceVersion"),
                )
                self.op.events.normal(self.ref, "Running", f"started by {self.op.config.identity}")
                return True
            except ConflictError:
                fresh = await self.op.kube.get(runs.GAMEDAYRUNS, self.namespace, self.name)
                if fresh is None:
                    return False
                body = self.body = fresh
        log.warning("run %s/%s: could not claim it (conflicts)", self.namespace, self.name)
        return False

    async def _execute(self) -> None:
        creds = RunCredentials()
        progress = RunProgress(self)
        status: GameDayRunStatus
        try:
            gameday = runs.run_gameday(self.body)
            creds = await read_kubeconfigs(self.op.kube, self.namespace, gameday)
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
        """The engine in a task of its own: ``stop`` cancels that task, exactly once, the way
        SIGINT does for ``chaosaa run``; the engine reverts every fault and returns."""
        self.inner = asyncio.ensure_future(run.execute())
        try:
            return await asyncio.shield(self.inner)
        except asyncio.CancelledError as exc:
            # cancelled before it started, or during its (shielded) cleanup: the outcome
            # recorded so far is what there is
            if not self.inner.done():
                self.inner.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(self.inner, ABORT_TIMEOUT)
            outcome = run.outcome
            outcome.stopped = stop_code(exc)
            outcome.reason = outcome.reason or self.stop_reason or "cancelled"
            outcome.finished_at = outcome.finished_at or time.time()
            return outcome

    def _stop_verdict(self) -> Any:
        return "interrupted" if self.stop_phase == "Interrupted" else "aborted"

    def _options(self, creds: RunCredentials) -> TargetOptions:
        return creds.target_options(self.op.config.targets, self.name, self.namespace)

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
            self.op.events.normal(self.ref, "Succeeded", message)
        else:
            self.op.events.warning(self.ref, status.phase or "Error", message)
        await self.op.runs.record_finished(self.body, status)


def _error_status(exc: ChaosaaError, reason: str) -> GameDayRunStatus:
    """A run that failed before the engine started (invalid GameDay, credentials)."""
    code = stop_code(exc)
    verdict = VERDICTS[code]
    return GameDayRunStatus(
        phase=runs.PHASES[verdict], verdict=verdict, reason=reason, exit_code=int(code)
    )


class RunExecutor:
    """The runs this operator executes, by (namespace, name)."""

    def __init__(self, op: Operator) -> None:
        self.op = op
        self.tasks: dict[Key, RunTask] = {}
        self._running = 0
        self._freed = asyncio.Condition()

    # ------------------------------------------------------------------ slots

    def try_slot(self) -> bool:
        if self._running < self.op.config.max_concurrent_runs:
            self._running += 1
            return True
        return False

    async def wait_slot(self) -> None:
        async with self._freed:
            await self._freed.wait_for(self.try_slot)

    def release_slot(self) -> None:
        self._running -= 1

        async def notify() -> None:
            async with self._freed:
                self._freed.notify(1)

        asyncio.get_running_loop().create_task(notify())

    # ------------------------------------------------------------------ tasks

    def owns(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.tasks

    def start(self, body: Mapping[str, Any]) -> None:
        """Execute a run in the background (idempotent per run)."""
        key = runs.key(body)
        if key in self.tasks:
            return
        run = RunTask(self.op, body)
        self.tasks[key] = run
        self.op.metrics.runs_running.set(len(self.tasks))
        run.task = asyncio.create_task(self._guard(run), name=f"run:{key[0]}/{key[1]}")

    async def _guard(self, run: RunTask) -> None:
        try:
            await run.main()
        except Exception:
            log.exception("run %s/%s failed unexpectedly", run.namespace, run.name)
        finally:
            self.tasks.pop((run.namespace, run.name), None)
            self.op.metrics.runs_running.set(len(self.tasks))
            self.op.scheduler.run_finished(run.namespace, run.gameday)

    async def stop(self, namespace: str, name: str, reason: str, phase: str = "Aborted") -> bool:
        """Cancel a run of ours and wait until the engine reverted its faults."""
        run = self.tasks.get((namespace, name))
        if run is None or run.task is None:
            return False
        run.stop_reason, run.stop_phase = reason, phase
        if run.run is not None:
            run.run.outcome.reason = reason
            run.run.emit("run.signal", {"action": "reverting every fault", "reason": reason})
        if run.inner is not None:
            run.inner.cancel()  # the engine reverts its faults and returns its outcome
        else:
            run.task.cancel()  # not started yet: nothing to revert
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(run.task), ABORT_TIMEOUT)
        return True

    async def shutdown(self, reason: str) -> None:
        """Operator stopping: every run of ours ends Interrupted, its faults reverted."""
        await asyncio.gather(
            *(self.stop(ns, name, reason, phase="Interrupted") for ns, name in list(self.tasks)),
            return_exceptions=True,
        )

    # ------------------------------------------------------------------ after a run

    async def record_finished(self, body: Mapping[str, Any], status: GameDayRunStatus) -> None:
        """Metrics, the GameDay's lastRun, and the history limits."""
        namespace, name = runs.key(body)
        spec = body.get("spec") or {}
        gameday = str(spec.get("gameDay", ""))
        verdict = status.verdict or "error"
        m = self.op.metrics
        m.runs_total.labels(namespace, gameday, verdict).inc()
        if status.failover_seconds is not None:
            m.failover_seconds.labels(namespace, gameday).set(status.failover_seconds)
        if status.peak_lag_seconds is not None:
            m.lag_peak_seconds.labels(namespace, gameday).set(status.peak_lag_seconds)
        last = LastRun(
            name=name,
            phase=status.phase,
            verdict=status.verdict,
            failover_seconds=status.failover_seconds,
            peak_lag_seconds=status.peak_lag_seconds,
            finished_at=status.finished_at,
        )
        await self.op.patch_gameday_status(
            namespace,
            gameday,
            {
                "lastRun": last.model_dump(by_alias=True, exclude_none=True),
                "active": [
                    n for n in self.op.scheduler.active_runs(namespace, gameday) if n != name
                ],
            },
        )
        await self._prune(namespace, gameday, spec.get("gameDaySpec") or {})

    async def _prune(self, namespace: str, gameday: str, spec: Mapping[str, Any]) -> None:
        try:
            existing = await self.op.kube.list(
                runs.GAMEDAYRUNS, namespace, f"{runs.LABEL_GAMEDAY}={gameday}"
            )
            keep_ok = int(spec.get("successfulRunsHistoryLimit", 3))
            keep_failed = int(spec.get("failedRunsHistoryLimit", 1))
            for old in runs.runs_to_delete(existing, keep_ok, keep_failed):
                await self.op.kube.delete(runs.GAMEDAYRUNS, namespace, old)
        except ChaosaaError as exc:
            log.warning("history of %s/%s not pruned: %s", namespace, gameday, exc)

    # ------------------------------------------------------------------ orphans

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
        self.op.events.warning(ref, "Interrupted", message)
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
            await self.op.kube.patch_status(
                runs.GAMEDAYRUNS, namespace, name, runs.status_patch(status, currentPhase=None)
            )
        except NotFoundError:
            return
        await self.record_finished(body, status)

    async def _rollback(self, namespace: str, name: str, gameday: GameDay) -> list[str]:
        creds = await read_kubeconfigs(self.op.kube, namespace, gameday)
        try:
            # what `chaosaa rollback FILE` passes: clean this GameDay's target
            options = creds.target_options(
                replace(self.op.config.targets, ephemeral=False),
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
