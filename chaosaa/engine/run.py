"""One run of a GameDay through the lifecycle of DESIGN.md section 4.

preflight -> steady-state -> inject -> observe -> revert (always) -> recover -> verify ->
report. ``execute`` never raises for problems of the run itself: every outcome, including
an environment error or a signal, ends in a report with a verdict and an exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaosaa.engine.faults import FaultRecord, FaultRunner
from chaosaa.engine.progress import NullProgress, Progress
from chaosaa.engine.slo import SLOContext, SLOResult, evaluate_slos
from chaosaa.engine.steady import CheckResult, evaluate_checks, watch_abort_rules
from chaosaa.errors import (
    AbortedError,
    ChaosaaError,
    ExitCode,
    FaultError,
    InvalidInputError,
)
from chaosaa.model import AckedWrite, Sample
from chaosaa.prom.client import PrometheusClient
from chaosaa.spec.checks import uses_prometheus
from chaosaa.spec.model import GameDay, LostWritesSLO, ReplicationLagSLO
from chaosaa.targets.base import Endpoints, Target, TargetEvent, TargetOptions, target_for
from chaosaa.traffic.generator import TrafficGenerator
from chaosaa.traffic.readback import read_back, wait_converged

log = logging.getLogger(__name__)

#: lease TTL; renewed together with the faults
LEASE_TTL = 15.0
#: how often traffic counters are reported to progress
PROGRESS_INTERVAL = 1.0


@dataclass
class RunOutcome:
    """Everything a run produced; the report is rendered from this alone."""

    gameday: GameDay
    run_id: str
    started_at: float
    finished_at: float = 0.0
    exit_code: ExitCode = ExitCode.PASSED
    verdict: str = "passed"
    reason: str | None = None
    endpoints: Endpoints | None = None
    faults: list[FaultRecord] = field(default_factory=list)
    steady_before: list[CheckResult] = field(default_factory=list)
    steady_after: list[CheckResult] = field(default_factory=list)
    slos: list[SLOResult] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    acked: list[AckedWrite] = field(default_factory=list)
    lost_writes: int = 0
    divergent_keys: int = 0
    conflicts: int = 0
    lag_series: list[tuple[float, float]] = field(default_factory=list)
    target_events: list[TargetEvent] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    injection_started_at: float | None = None


class Run:
    """Executes one GameDay. Create, then ``await run.execute()``."""

    def __init__(
        self,
        gameday: GameDay,
        options: TargetOptions | None = None,
        progress: Progress | None = None,
        *,
        target: Target | None = None,
    ) -> None:
        self.gameday = gameday
        self.spec = gameday.spec
        self.run_id = (options.run_id if options and options.run_id != "manual" else None) or (
            f"{gameday.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        )
        self.options = options or TargetOptions(run_id=self.run_id)
        self.progress = progress or NullProgress()
        self.target = target or target_for(self.spec.target, self.options)
        self.outcome = RunOutcome(gameday=gameday, run_id=self.run_id, started_at=time.time())
        self.prom: PrometheusClient | None = None
        self.traffic: TrafficGenerator | None = None
        self._fault_runners: list[FaultRunner] = []
        self._lease_held = False
        self._opened = False

    # ------------------------------------------------------------------ helpers

    def emit(self, event: str, detail: dict[str, Any] | None = None) -> None:
        at = time.time()
        detail = detail or {}
        self.outcome.timeline.append({"at": at, "event": event, "detail": detail})
        self.progress.event(at, event, detail)

    def _phase(self, name: str, detail: str = "") -> None:
        self.emit(f"phase.{name}", {"detail": detail} if detail else {})
        self.progress.phase(name, detail)

    async def _prom(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # ------------------------------------------------------------------ lifecycle

    async def execute(self) -> RunOutcome:
        out = self.outcome
        try:
            await self._lifecycle()
        except asyncio.CancelledError:
            # SIGINT/SIGTERM: the faults were reverted on the way out (finally blocks).
            out.exit_code, out.verdict = ExitCode.ABORTED, "aborted"
            out.reason = out.reason or "interrupted"
            self.emit("run.interrupted", {"reason": out.reason})
        except AbortedError as exc:
            out.exit_code, out.verdict, out.reason = ExitCode.ABORTED, "aborted", str(exc)
            self.emit("run.aborted", {"reason": str(exc)})
        except InvalidInputError as exc:
            out.exit_code, out.verdict, out.reason = ExitCode.INVALID, "error", str(exc)
            self.emit("run.invalid", {"reason": str(exc)})
        except ChaosaaError as exc:
            out.exit_code, out.verdict, out.reason = exc.exit_code, "error", str(exc)
            self.emit("run.error", {"reason": str(exc)})
        except Exception as exc:  # a bug or an unexpected failure: still a report
            log.exception("run failed unexpectedly")
            out.exit_code, out.verdict = ExitCode.ENVIRONMENT, "error"
            out.reason = f"unexpected error: {type(exc).__name__}: {exc}"
            self.emit("run.error", {"reason": out.reason})
        finally:
            await asyncio.shield(self._cleanup())
        if out.exit_code == ExitCode.PASSED and any(s.verdict != "passed" for s in out.slos if not s.ignored):
            out.exit_code, out.verdict = ExitCode.SLO_FAILED, "failed"
        if out.exit_code == ExitCode.PASSED and any(not c.passed for c in out.steady_after):
            out.exit_code, out.verdict = ExitCode.SLO_FAILED, "failed"
            out.reason = out.reason or "steady state not restored after recovery"
        out.finished_at = time.time()
        self.emit("run.finished", {"verdict": out.verdict, "exitCode": int(out.exit_code)})
        return out

    async def _lifecycle(self) -> None:
        endpoints = await self._preflight()
        await self._start_traffic(endpoints)
        await self._steady_state_before()
        await self._inject_and_observe()
        await self._recover()
        await self._verify()

    async def _preflight(self) -> Endpoints:
        self._phase("preflight")
        self.target.check(list(self.spec.faults))
        endpoints = await self.target.open()
        self._opened = True
        self.outcome.endpoints = endpoints
        self.emit("target.open", {"entry": endpoints.entry_url, "regions": dict(endpoints.regions)})
        url = self.spec.prometheus.url or endpoints.prometheus_url
        if uses_prometheus(self.spec):
            if not url:
                raise InvalidInputError("spec.prometheus.url: required: this target supplies none")
            self.prom = PrometheusClient(url, timeout=self.spec.prometheus.timeout)
            await self._prom(self.prom.ping)
            for expr in self._expressions(endpoints):
                await self._prom(self.prom.check_expression, expr)
        if not endpoints.entry_url and not endpoints.regions:
            raise InvalidInputError(
                "spec.target.url: the target gives no entry point for traffic; set target.url"
            )
        await self.target.acquire_lease(self.run_id, LEASE_TTL)
        self._lease_held = True
        return endpoints

    def _expressions(self, endpoints: Endpoints) -> list[str]:
        exprs = [c.promql for c in self.spec.steady_state] + [a.promql for a in self.spec.abort]
        for slo in self.spec.slos:
            promql = getattr(slo, "promql", None)
            if promql:
                exprs.append(promql)
        exprs += [q for q in endpoints.queries.values() if q]
        return list(dict.fromkeys(exprs))

    async def _start_traffic(self, endpoints: Endpoints) -> None:
        t = self.spec.traffic
        entry = endpoints.entry_url or next(iter(endpoints.regions.values()))
        homes = list(t.homes) or list(self.spec.target.regions)
        self.traffic = TrafficGenerator(
            entry,
            rate=t.rate,
            write_ratio=t.write_ratio,
            timeout=t.timeout,
            keys=t.keys,
            homes=homes,
            run_id=self.run_id,
        )
        self._phase("traffic", f"{t.rate:g} req/s, {t.write_ratio:.0%} writes to {entry}")
        await self.traffic.start()
        self._progress_task = asyncio.create_task(self._report_traffic())

    async def _report_traffic(self) -> None:
        assert self.traffic is not None
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            c = self.traffic.counters()
            self.progress.traffic(c.sent, c.ok, c.errors, dict(c.by_region))

    async def _steady_state_before(self) -> None:
        warmup = self.spec.traffic.warmup
        self._phase("steady-state", f"warm-up {warmup:g}s, then {len(self.spec.steady_state)} checks")
        await asyncio.sleep(warmup)
        if not self.spec.steady_state:
            return
        assert self.prom is not None
        results = await evaluate_checks(self.prom, self.spec.steady_state)
        self.outcome.steady_before = results
        failed = [r for r in results if not r.passed]
        for r in results:
            self.emit("steady.before", {"check": r.name, "value": r.value, "passed": r.passed})
        if failed:
            raise AbortedError(
                "steady state not met before injection: "
                + "; ".join(f"{r.name} = {r.value_text} (expected {r.expect})" for r in failed)
            )

    async def _inject_and_observe(self) -> None:
        self._phase("inject", f"{len(self.spec.faults)} fault(s) over {self.spec.fault_span():g}s")
        start = time.monotonic()
        self.outcome.injection_started_at = time.time()
        runners = [FaultRunner(self.target, f, self.emit) for f in self.spec.faults]
        self._fault_runners = runners
        self.outcome.faults = [r.record for r in runners]
        tasks = [asyncio.create_task(r.run(start), name=f"fault:{r.fault.name}") for r in runners]
        lease = asyncio.create_task(self._renew_lease())
        abort = None
        if self.spec.abort:
            assert self.prom is not None
            abort = asyncio.create_task(watch_abort_rules(self.prom, self.spec.abort, self.emit))
        failed: BaseException | None = None
        try:
            waiters: set[asyncio.Future[Any]] = set(tasks)
            if abort is not None:
                waiters.add(abort)
            remaining: set[asyncio.Future[Any]] = set(tasks)
            while remaining:
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for d in done:
                    d.result()  # re-raises AbortedError (abort rule) or FaultError
                waiters -= done
                remaining -= done
        except BaseException as exc:
            failed = exc
            raise
        finally:
            for task in tasks:
                task.cancel()
            # every fault reverts in its own finally; wait for all of them
            results = await asyncio.gather(*tasks, return_exceptions=True)
            helpers = [lease, *([abort] if abort is not None else [])]
            for h in helpers:
                h.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            revert_errors = [r for r in results if isinstance(r, FaultError)]
            if revert_errors and failed is None:
                raise revert_errors[0]
        self._phase("observe", "faults reverted")

    async def _renew_lease(self) -> None:
        while True:
            await asyncio.sleep(LEASE_TTL / 3)
            try:
                await self.target.renew_lease(self.run_id, LEASE_TTL)
            except ChaosaaError as exc:
                log.warning("lease renewal failed: %s", exc)

    async def _recover(self) -> None:
        settle = self.spec.recovery.settle
        sustain_needed = max(
            (getattr(s, "sustain", 0.0) for s in self.spec.slos), default=0.0
        )
        lag_wait = max(
            ((s.recover_within or 0.0) for s in self.spec.slos if isinstance(s, ReplicationLagSLO)),
            default=0.0,
        )
        wait = max(settle, sustain_needed + 1.0 if self.spec.faults else 0.0, lag_wait)
        if self.spec.traffic.duration != "auto":
            wait = max(wait, self._traffic_remaining())
        self._phase("recover", f"settle {wait:g}s")
        await asyncio.sleep(wait)
        if self.spec.steady_state:
            assert self.prom is not None
            self.outcome.steady_after = await evaluate_checks(self.prom, self.spec.steady_state)
            for r in self.outcome.steady_after:
                self.emit("steady.after", {"check": r.name, "value": r.value, "passed": r.passed})

    def _traffic_remaining(self) -> float:
        assert self.outcome.injection_started_at is not None
        d = self.spec.traffic.duration
        assert d != "auto"
        elapsed = time.time() - self.outcome.started_at
        return max(0.0, d - elapsed)

    async def _verify(self) -> None:
        self._phase("verify")
        assert self.traffic is not None
        await self._stop_traffic()
        self.outcome.samples = self.traffic.samples()
        self.outcome.acked = self.traffic.acked_writes()
        if any(isinstance(s, LostWritesSLO) for s in self.spec.slos):
            await self._check_lost_writes()
        ctx = SLOContext(
            spec=self.spec,
            prom=self.prom,
            endpoints=self.outcome.endpoints or Endpoints(entry_url=None),
            faults=self.outcome.faults,
            samples=self.outcome.samples,
            acked=self.outcome.acked,
            lost_writes=self.outcome.lost_writes,
            divergent_keys=self.outcome.divergent_keys,
            end=time.time(),
            rate=self.spec.traffic.rate,
            canary=self._canary,
        )
        self.outcome.slos = await evaluate_slos(ctx)
        for s in self.outcome.slos:
            self.emit("slo", {"slo": s.name, "verdict": s.verdict, "measured": s.measured})
        with contextlib.suppress(Exception):
            self.outcome.target_events = await self.target.events(self.outcome.started_at)

    async def _check_lost_writes(self) -> None:
        endpoints = self.outcome.endpoints
        if not endpoints or not endpoints.regions:
            return
        keys = sorted({w.key for w in self.outcome.acked})
        timeout = self.spec.recovery.convergence_timeout
        self.progress.phase("verify", f"waiting up to {timeout:g}s for regions to converge")
        divergent = await wait_converged(dict(endpoints.regions), keys, timeout)
        final = await read_back(dict(endpoints.regions), keys)
        from chaosaa.measure.lostwrites import lost_writes

        result = lost_writes(self.outcome.acked, final)
        self.outcome.lost_writes = result.lost
        self.outcome.divergent_keys = len(divergent)
        self.emit("data.integrity", {"acknowledged": len(self.outcome.acked), "lost": result.lost,
                                     "divergentKeys": len(divergent)})

    async def _stop_traffic(self) -> None:
        task = getattr(self, "_progress_task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.traffic is not None:
            await self.traffic.stop(drain_timeout=self.spec.traffic.timeout + 1.0)

    async def _cleanup(self) -> None:
        """Runs on every exit path: faults were reverted by their runners; stop the rest."""
        self._phase("cleanup")
        for runner in self._fault_runners:
            rec = runner.record
            if rec.requested_at is not None and rec.reverted_at is None and rec.applied is not None:
                # a fault task never got to revert (should not happen): do it here
                try:
                    await self.target.revert(rec.applied)
                except Exception as exc:
                    rec.error = f"revert failed: {exc}"
                    self.outcome.exit_code, self.outcome.verdict = ExitCode.ENVIRONMENT, "error"
        with contextlib.suppress(Exception):
            await self._stop_traffic()
        if self._lease_held:
            with contextlib.suppress(Exception):
                await self.target.release_lease(self.run_id)
        if self._opened:
            with contextlib.suppress(Exception):
                await self.target.close()
