"""One run of a GameDay through the lifecycle of DESIGN.md section 4.

preflight -> steady-state -> inject -> observe -> revert (always) -> recover -> verify ->
report. ``execute`` never raises for problems of the run itself: every outcome, including
an environment error or a signal, ends in a ``RunOutcome`` that the report is built from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from chaosaa.engine.canaries import DatastoreCanaries
from chaosaa.engine.evidence import collect_series, conflict_count, read_back
from chaosaa.engine.faults import FaultRunner
from chaosaa.engine.outcome import RunOutcome
from chaosaa.engine.progress import NullProgress, Progress
from chaosaa.engine.recovery import recovery_wait
from chaosaa.engine.slo import SLOContext, evaluate_slos
from chaosaa.engine.steady import evaluate_checks, watch_abort_rules
from chaosaa.engine.verdict import stop_code
from chaosaa.errors import AbortedError, ChaosaaError, FaultError, InvalidInputError
from chaosaa.failpoints import failpoint
from chaosaa.prom.client import PrometheusClient
from chaosaa.spec.checks import canary_applies, uses_prometheus
from chaosaa.spec.model import GameDay, GameDaySpec, LostWritesSLO, ReplicationLagSLO
from chaosaa.spec.traffic import HttpProbe, KvProbe
from chaosaa.targets.base import Endpoints, Target, TargetOptions, target_for
from chaosaa.traffic.generator import TrafficGenerator
from chaosaa.traffic.readback import canary_lag

log = logging.getLogger(__name__)

#: lease TTL; renewed while the faults run
LEASE_TTL = 15.0
#: how often traffic counters are reported to progress
PROGRESS_INTERVAL = 1.0
#: how long giving the lease back may take at the end of a run
RELEASE_TIMEOUT = 3.0


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
        if options is not None and options.run_id != "manual":
            self.run_id = options.run_id
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            self.run_id = f"{gameday.name}-{stamp}-{uuid.uuid4().hex[:6]}"
        self.options = options or TargetOptions(run_id=self.run_id)
        self.progress = progress or NullProgress()
        self.target = target or target_for(self.spec.target, self.options)
        self.outcome = RunOutcome(gameday=gameday, run_id=self.run_id, started_at=time.time())
        self.prom: PrometheusClient | None = None
        self.traffic: TrafficGenerator | None = None
        #: the datastores' canaries, from the warm-up until verify
        self.datastores = DatastoreCanaries([])
        self._fault_runners: list[FaultRunner] = []
        self._lease_held = False
        self._opened = False
        self._lost_details: dict[str, Any] = {}
        self._background: list[asyncio.Task[Any]] = []
        self._conflicts_before: float | None = None
        self._task: asyncio.Future[RunOutcome] | None = None
        self._stopping = False
        #: the run reached its cleanup: a stop no longer cancels it
        self._cleaning = False

    # ------------------------------------------------------------------ helpers

    def emit(self, event: str, detail: dict[str, Any] | None = None) -> None:
        at = time.time()
        detail = detail or {}
        self.outcome.timeline.append({"at": at, "event": event, "detail": detail})
        self.progress.event(at, event, detail)

    def _phase(self, name: str, detail: str = "") -> None:
        self.emit(f"phase.{name}", {"detail": detail} if detail else {})
        self.progress.phase(name, detail)

    async def _prom(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    # ------------------------------------------------------------------ start and stop

    def start(self) -> asyncio.Future[RunOutcome]:
        """:meth:`execute` in a task of its own, for :meth:`stop` to cancel. Await it
        shielded: whoever waits may be cancelled, the run ends only through ``stop``."""
        self._task = asyncio.ensure_future(self.execute())
        return self._task

    @property
    def started(self) -> bool:
        return self._task is not None

    def stop(self, reason: str, /, **event: Any) -> bool:
        """Stop a started run the way SIGINT does, exactly once: say why (``event``: what
        the ``run.signal`` event adds), cancel it; every fault reverts and the task
        returns the outcome. False if it is stopping already, or not started."""
        if self._task is None or self._stopping:
            return False
        self._stopping = True
        if self._cleaning:
            # every fault is reverted already; cancelling now would only lose the outcome
            self.emit("run.signal", {**event, "action": "the run is over; finishing cleanup"})
            return True
        self.outcome.reason = reason
        self.emit("run.signal", {**event, "action": "reverting every fault"})
        self._task.cancel()
        return True

    # ------------------------------------------------------------------ lifecycle

    async def execute(self) -> RunOutcome:
        out = self.outcome
        try:
            await self._lifecycle()
        except asyncio.CancelledError as exc:
            # SIGINT/SIGTERM: the faults were reverted on the way out (finally blocks).
            self._stopped(exc, "run.interrupted", out.reason or "interrupted")
        except AbortedError as exc:
            self._stopped(exc, "run.aborted", str(exc))
        except InvalidInputError as exc:
            self._stopped(exc, "run.invalid", str(exc))
        except ChaosaaError as exc:
            self._stopped(exc, "run.error", str(exc))
        except Exception as exc:  # a bug or an unexpected failure: still a report
            log.exception("run failed unexpectedly")
            self._stopped(exc, "run.error", f"unexpected error: {type(exc).__name__}: {exc}")
        finally:
            self._cleaning = True
            await self._finish_cleanup()
        out.finished_at = time.time()
        self.emit("run.finished", {"exitCode": int(out.exit_code), "reason": out.reason})
        return out

    async def _finish_cleanup(self) -> None:
        """Clean up to the end, even if the task is cancelled meanwhile (``stop`` does not
        cancel any more, but whoever awaits the task may): the outcome is still returned."""
        cleanup = asyncio.ensure_future(self._cleanup())
        while not cleanup.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(cleanup)
        if not cleanup.cancelled() and cleanup.exception() is not None:
            # a bug in cleanup must not cost the report
            log.error("cleaning up after the run failed", exc_info=cleanup.exception())

    def _stopped(self, exc: BaseException, event: str, reason: str) -> None:
        self.outcome.stopped, self.outcome.reason = stop_code(exc), reason
        self.emit(event, {"reason": reason})

    async def _lifecycle(self) -> None:
        endpoints = await self._preflight()
        await failpoint("preflight.after")
        await self._watch_datastores(endpoints)
        await self._start_traffic(endpoints)
        await failpoint("traffic.after")
        await self._steady_state_before()
        await failpoint("steady.after")
        await self._inject_and_observe()
        await failpoint("observe.after")
        await self._recover()
        await failpoint("recover.after")
        await self._verify()
        await failpoint("verify.after")

    async def _preflight(self) -> Endpoints:
        kind = self.spec.target.kind
        hint = " (a temporary lab starts if none is running)" if kind == "lab" else ""
        self._phase("preflight", f"reaching the {kind} target and Prometheus{hint}")
        self.target.check(list(self.spec.faults))
        needs_prom = uses_prometheus(self.spec)
        if needs_prom and self.spec.prometheus.url:
            # a Prometheus of the user's: check it before touching the target at all
            await self._connect_prometheus(self.spec.prometheus.url, Endpoints(entry_url=None))
        endpoints = await self.target.open()
        self._opened = True
        self.outcome.endpoints = endpoints
        self.emit("target.open", {"entry": endpoints.entry_url, "regions": dict(endpoints.regions)})
        url = self.spec.prometheus.url or endpoints.prometheus_url
        if url and (needs_prom or endpoints.queries):
            if not self.spec.prometheus.url or endpoints.queries:
                await self._connect_prometheus(url, endpoints)
        elif needs_prom:
            raise InvalidInputError("spec.prometheus.url: required: this target supplies none")
        if (
            not endpoints.entry_url
            and not endpoints.regions
            and not probe_has_own_address(self.spec)
        ):
            raise InvalidInputError(
                "spec.target.url: the target gives no entry point for traffic; set target.url "
                "(or the http probe's url or endpoints)"
            )
        await self.target.preflight(list(self.spec.faults))
        await self.target.acquire_lease(self.run_id, LEASE_TTL)
        self._lease_held = True
        return endpoints

    async def _connect_prometheus(self, url: str, endpoints: Endpoints) -> None:
        self.prom = PrometheusClient(url, timeout=self.spec.prometheus.timeout)
        await self._prom(self.prom.ping)
        for expr in self._expressions(endpoints):
            await self._prom(self.prom.check_expression, expr)

    def _expressions(self, endpoints: Endpoints) -> list[str]:
        exprs = [c.promql for c in self.spec.steady_state] + [a.promql for a in self.spec.abort]
        exprs += [p for p in (getattr(s, "promql", None) for s in self.spec.slos) if p]
        exprs += [q for q in endpoints.queries.values() if q]
        return list(dict.fromkeys(exprs))

    async def _start_traffic(self, endpoints: Endpoints) -> None:
        t = self.spec.traffic
        entry = endpoints.entry_url
        homes = list(t.homes) or list(self.spec.target.regions)
        self.traffic = TrafficGenerator.from_spec(
            t, entry, regions=homes, run_id=self.run_id, region_urls=dict(endpoints.regions)
        )
        self._phase("traffic", traffic_phase_detail(self.spec, self.traffic.rate, entry))
        await self.traffic.start()
        self._background.append(asyncio.create_task(self._report_traffic()))

    async def _watch_datastores(self, endpoints: Endpoints) -> None:
        """Canaries in every datastore (the GameDay's and the target's), from now on."""
        self.datastores = DatastoreCanaries.for_run(self.spec, endpoints, self.run_id)
        self.outcome.datastores = self.datastores
        if not self.datastores:
            return
        names = ", ".join(w.name for w in self.datastores.watches)
        self._phase("canaries", f"canary rows in every region of {names}")
        await self.datastores.start()

    async def _report_traffic(self) -> None:
        assert self.traffic is not None
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            c = self.traffic.counters
            served = {r: n.ok for r, n in c.by_region.items()}
            self.progress.traffic(c.sent, c.ok, c.errors, served)

    async def _steady_state_before(self) -> None:
        warmup = self.spec.traffic.warmup
        checks = len(self.spec.steady_state)
        self._phase("steady-state", f"warm-up {warmup:g}s, then {checks} check(s)")
        await asyncio.sleep(warmup)
        if not self.spec.steady_state:
            return
        assert self.prom is not None
        results = await evaluate_checks(self.prom, self.spec.steady_state)
        self.outcome.steady_before = results
        for r in results:
            self.emit("steady.before", {"check": r.name, "value": r.value, "passed": r.passed})
        failed = [r for r in results if not r.passed]
        if failed:
            raise AbortedError(
                "steady state not met before injection: "
                + "; ".join(
                    f"{r.name} = {'no data' if r.value is None else f'{r.value:g}'} "
                    f"(expected {r.expect})"
                    for r in failed
                )
            )

    async def _inject_and_observe(self) -> None:
        span = self.spec.fault_span()
        self._phase("inject", f"{len(self.spec.faults)} fault(s) over {span:g}s")
        start = time.monotonic()
        self.outcome.injection_started_at = time.time()
        self._conflicts_before = await conflict_count(self.prom, self.outcome.endpoints)
        runners = [FaultRunner(self.target, f, self.emit) for f in self.spec.faults]
        self._fault_runners = runners
        self.outcome.faults = [r.record for r in runners]
        tasks = [asyncio.create_task(r.run(start), name=f"fault:{r.fault.name}") for r in runners]
        helpers: list[asyncio.Task[Any]] = [asyncio.create_task(self._renew_lease())]
        abort: asyncio.Task[Any] | None = None
        if self.spec.abort:
            assert self.prom is not None
            abort = asyncio.create_task(watch_abort_rules(self.prom, self.spec.abort, self.emit))
            helpers.append(abort)
        self._start_canaries(runners)
        failed: BaseException | None = None
        try:
            waiters: set[asyncio.Task[Any]] = set(tasks) | ({abort} if abort else set())
            remaining: set[asyncio.Task[Any]] = set(tasks)
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
            for h in helpers:
                h.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            revert_errors = [r for r in results if isinstance(r, FaultError)]
            if revert_errors and failed is None:
                raise revert_errors[0]
        self._phase("observe", "every fault reverted")

    def _start_canaries(self, runners: list[FaultRunner]) -> None:
        """Canary lag: a marker written in one region, polled in the others."""
        endpoints = self.outcome.endpoints
        wants = any(isinstance(s, ReplicationLagSLO) and s.canary for s in self.spec.slos)
        if not wants or not canary_applies(self.spec) or endpoints is None:
            return
        if len(endpoints.regions) < 2:
            return
        for runner in runners:
            route = runner.fault.canary_route(list(endpoints.regions))
            if route is not None:
                self._background.append(asyncio.create_task(self._canary(runner, *route)))

    async def _canary(self, runner: FaultRunner, source: str, targets: list[str]) -> None:
        endpoints = self.outcome.endpoints
        assert endpoints is not None
        while runner.record.effective_at is None:
            if runner.record.error or runner.record.revert_requested_at:
                return
            await asyncio.sleep(0.05)
        limit = runner.fault.duration + self.spec.recovery.convergence_timeout
        try:
            lags = await canary_lag(dict(endpoints.regions), source, targets, limit)
        except ChaosaaError as exc:
            log.info("canary from %s failed: %s", source, exc)
            return
        for region, lag in lags.items():
            key = f"{source}->{region}"
            old = self.outcome.canary.get(key)
            self.outcome.canary[key] = lag if old is None or lag is None else max(old, lag)
        self.emit("canary", {"fault": runner.fault.name, "source": source, "lagSeconds": lags})

    async def _renew_lease(self) -> None:
        while True:
            await asyncio.sleep(LEASE_TTL / 3)
            try:
                await self.target.renew_lease(self.run_id, LEASE_TTL)
            except ChaosaaError as exc:
                log.warning("lease renewal failed: %s", exc)

    async def _recover(self) -> None:
        wait = recovery_wait(self.spec, time.time() - self.outcome.started_at)
        self._phase("recover", f"traffic goes on for {wait:g}s")
        await asyncio.sleep(wait)
        if self.spec.steady_state:
            assert self.prom is not None
            self.outcome.steady_after = await evaluate_checks(self.prom, self.spec.steady_state)
            for r in self.outcome.steady_after:
                self.emit("steady.after", {"check": r.name, "value": r.value, "passed": r.passed})

    async def _verify(self) -> None:
        self._phase("verify")
        assert self.traffic is not None
        await self._stop_background()
        await self.traffic.stop(drain_timeout=self.spec.traffic.timeout + 1.0)
        self.outcome.samples = self.traffic.samples()
        self.outcome.acked = self.traffic.acked_writes()
        if any(isinstance(s, LostWritesSLO) for s in self.spec.slos):
            timeout = self.spec.recovery.convergence_timeout
            self._lost_details = await read_back(self.outcome, timeout, self.progress, self.emit)
        if self.datastores:
            await self.datastores.verify(self.progress)
            for w in self.datastores.watches:
                i = w.integrity
                self.emit(
                    "canary.integrity",
                    {
                        "datastore": w.name,
                        "acknowledged": i.acknowledged if i else None,
                        "lost": i.lost if i else None,
                        "divergent": i.divergent if i else None,
                        "error": w.error,
                    },
                )
        end = time.time()
        await collect_series(self.prom, self.outcome, end, self._conflicts_before)
        ctx = SLOContext(
            spec=self.spec,
            prom=self.prom,
            endpoints=self.outcome.endpoints or Endpoints(entry_url=None),
            faults=self.outcome.faults,
            samples=self.outcome.samples,
            acked=self.outcome.acked,
            lost_writes=self.outcome.lost_writes,
            divergent_keys=self.outcome.divergent_keys,
            end=end,
            rate=self.spec.traffic.rate,
            canary=self.outcome.canary or None,
            lost_details=self._lost_details,
            start=self.outcome.injection_started_at or self.outcome.started_at,
            datastores=self.datastores,
        )
        self.outcome.slos = await evaluate_slos(ctx)
        for s in self.outcome.slos:
            self.emit("slo", {"slo": s.name, "verdict": s.verdict, "measured": s.measured})
        with contextlib.suppress(Exception):
            self.outcome.target_events = await self.target.events(self.outcome.started_at)

    async def _stop_background(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()

    async def _cleanup(self) -> None:
        """Runs on every exit path: faults were reverted by their runners; stop the rest."""
        self._phase("cleanup")
        for runner in self._fault_runners:
            try:
                await runner.ensure_reverted()
            except Exception as exc:
                log.error("fault %s could not be reverted: %s", runner.fault.name, exc)
        remains = [r for r in (runner.may_remain() for runner in self._fault_runners) if r]
        if remains:
            failed = FaultError(
                "may remain on the target (not verified reverted; each reverts itself at its "
                f"TTL if the target is alive): {'; '.join(remains)}"
            )
            self.outcome.stopped = stop_code(failed)  # even over an abort: it is an error
            earlier = self.outcome.reason
            self.outcome.reason = f"{earlier}; {failed}" if earlier else str(failed)
            self.emit("run.leftovers", {"faults": remains})
        await self._stop_background()
        await self.datastores.close()
        if self.traffic is not None:
            with contextlib.suppress(Exception):
                await self.traffic.stop(drain_timeout=self.spec.traffic.timeout + 1.0)
        if self._lease_held:
            # bounded: a target that stopped answering must not hold the report back;
            # the lease lapses by itself (LEASE_TTL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.target.release_lease(self.run_id), RELEASE_TIMEOUT)
        if self._opened:
            with contextlib.suppress(Exception):
                await self.target.close()
        if self.prom is not None:
            with contextlib.suppress(Exception):
                self.prom.close()


def probe_has_own_address(spec: GameDaySpec) -> bool:
    """An http probe with a URL or endpoints of its own needs no entry point from the target."""
    probe = spec.traffic.probe
    return isinstance(probe, HttpProbe) and bool(probe.url or probe.endpoints)


def traffic_phase_detail(spec: GameDaySpec, peak: float, entry: str | None) -> str:
    """What the traffic phase says it starts: the load profile's peak, what it sends, where."""
    probe = spec.traffic.probe
    what = (
        f"{spec.traffic.write_ratio:.0%} writes"
        if isinstance(probe, KvProbe)
        else f"http {probe.method} {probe.path}"
    )
    where = (probe.url if isinstance(probe, HttpProbe) else None) or entry
    return f"open loop, peak {peak:g} req/s, {what} to {where or 'each region endpoint'}"
