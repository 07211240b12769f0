"""Open-loop traffic: the load of a GameDay, its high-resolution failover probe and the
ledger of acknowledged writes that ``lostWrites`` reads back.

Open loop means request ``i`` is sent at its due instant (``t0 + i / rate`` for a constant
rate; see ``chaosaa.traffic.profile`` for stages and per-region loads) whatever happened
to the requests before it. A closed-loop client (send, wait, send) slows down exactly
when the system does and so under-reports an outage (coordinated omission); here a slow or
hung system gets the same request rate, every request has its own timeout, and the number
in flight is capped. A request that would exceed the cap is not skipped: it is recorded
as a client-side failure with ``error="overload"``.

Where it runs: up to ``IN_PROCESS_MAX_RATE`` in the caller's event loop (one process is
plenty, and starting workers would cost more than it saves); above it, in one worker
process per ``PER_WORKER_RATE`` up to one per usable CPU, each sending its share of the
same schedule (``chaosaa.traffic.workers``). Either way there is one sample log, one write
ledger and one clock anchor.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from chaosaa.errors import InvalidInputError, TargetUnreachableError
from chaosaa.model import AckedWrite, Sample
from chaosaa.spec.traffic import HttpProbe as HttpProbeSpec
from chaosaa.spec.traffic import Traffic
from chaosaa.traffic.probes import HOME_HEADER, REGION_HEADER, Probe, http_probe, kv_probe
from chaosaa.traffic.profile import LoadPlan, constant_plan, load_plan
from chaosaa.traffic.recording import RegionTable, SampleLog, WriteLedger
from chaosaa.traffic.runner import RegionCounts, Runner, RunnerConfig, TrafficCounters
from chaosaa.traffic.workers import WorkerError, WorkerPool

__all__ = [
    "HOME_HEADER",
    "REGION_HEADER",
    "RegionCounts",
    "TrafficCapacityError",
    "TrafficCounters",
    "TrafficGenerator",
    "capacity",
]

log = logging.getLogger(__name__)

#: hard bound on one run, whatever the caller asks for
MAX_RUN_SECONDS = 24 * 3600.0
#: peak rates up to this run in the caller's process (docs/benchmarks.md: one uvloop core
#: sends this with send-time error p99 well under a millisecond)
IN_PROCESS_MAX_RATE = 2_000.0
#: rate one worker process is given at most, so that it keeps spare time for answers
PER_WORKER_RATE = 10_000.0
#: open-loop rate one core sustains with every criterion of bench/traffic.py met, measured
#: with margin (docs/benchmarks.md); a run asking for more than the cores can carry is
#: refused rather than recording the generator's own overload as the system's errors
PER_CORE_CAPACITY = 15_000.0
#: file descriptors kept free for everything else in the process
_FD_RESERVE = 256
_MIN_IN_FLIGHT = 16


class TrafficCapacityError(InvalidInputError, ValueError):
    """The requested peak rate is more than this machine's cores can send open loop."""


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def capacity(cpus: int | None = None) -> float:
    """The highest peak rate (req/s) a run may ask for on ``cpus`` cores (default: this
    process's)."""
    return PER_CORE_CAPACITY * (cpus or usable_cpus())


def workers_for(peak_rate: float, cpus: int | None = None) -> int:
    """0 (in the caller's process) or the number of worker processes for ``peak_rate``."""
    if peak_rate <= IN_PROCESS_MAX_RATE:
        return 0
    return max(1, min(cpus or usable_cpus(), math.ceil(peak_rate / PER_WORKER_RATE)))


def _wall_clock_offset() -> float:
    """``time.time() - time.monotonic()``, from the tightest of a few paired readings."""
    best = (math.inf, 0.0)
    for _ in range(5):
        m1 = time.monotonic()
        wall = time.time()
        m2 = time.monotonic()
        best = min(best, (m2 - m1, wall - (m1 + m2) / 2))
    return best[1]


def default_max_in_flight(rate: float, timeout: float) -> int:
    """Room for twice the requests a fully hung system would hold, within the fd limit."""
    import resource

    wanted = max(_MIN_IN_FLIGHT, math.ceil(rate * timeout * 2))
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        wanted = min(wanted, max(_MIN_IN_FLIGHT, soft - _FD_RESERVE))
    return wanted


class TrafficGenerator:
    """Open-loop HTTP load with a pluggable probe (default: the demo KV API).

    ``entry_url`` is the global entry point; with ``entry_url=None`` each request goes
    straight to ``region_urls[home]``. ``homes`` are claimed round-robin in the
    ``X-Chaosaa-Home`` header (empty: no header). Use as::

        gen = TrafficGenerator(url, rate=50, write_ratio=0.3, timeout=1, keys=200,
                               homes=["us", "eu"], run_id="r1")
        await gen.run(30)            # or: await gen.start(); ...; await gen.stop(2)
        gen.samples(), gen.acked_writes(), gen.counters

    ``plan`` (a ``LoadPlan``) replaces ``rate``/``homes``; ``probe`` replaces the KV probe;
    ``workers`` forces a number of worker processes (0: in this process).
    """

    def __init__(
        self,
        entry_url: str | None,
        *,
        rate: float | None = None,
        write_ratio: float = 0.3,
        timeout: float,
        keys: int = 200,
        homes: Sequence[str] = (),
        run_id: str,
        region_urls: dict[str, str] | None = None,
        max_in_flight: int | None = None,
        seed: int | None = None,
        plan: LoadPlan | None = None,
        probe: Probe | None = None,
        workers: int | None = None,
    ) -> None:
        if plan is None:
            if rate is None or rate <= 0:
                raise ValueError("need rate > 0 (or a load plan)")
            plan = constant_plan(rate, list(homes) or [None])
        if timeout <= 0 or keys < 1 or not 0 <= write_ratio <= 1:
            raise ValueError("need timeout > 0, keys >= 1, 0 <= write_ratio <= 1")
        if not run_id:
            raise ValueError("run_id must not be empty")
        self.plan = plan
        self.rate = plan.peak_rate
        self.write_ratio = float(write_ratio)
        self.timeout = float(timeout)
        self.keys = int(keys)
        self.homes: list[str | None] = plan.homes
        self.run_id = run_id
        self.probe = probe or kv_probe(
            entry_url,
            region_urls or {},
            self.homes,
            write_ratio=self.write_ratio,
            keys=self.keys,
            run_id=run_id,
        )
        if self.rate > capacity():
            raise TrafficCapacityError(
                f"spec.traffic: a peak of {self.rate:,.0f} req/s is more than the "
                f"{usable_cpus()} CPU(s) here send open loop (about {capacity():,.0f} req/s)"
            )
        self.workers = workers_for(self.rate) if workers is None else workers
        self.max_in_flight = max_in_flight or default_max_in_flight(self.rate, self.timeout)
        self.counters = TrafficCounters()
        self._seed = seed
        self._wall_offset = _wall_clock_offset()
        self._runner: Runner | None = None
        self._pool: WorkerPool | None = None
        self._log = SampleLog(RegionTable())
        self._ledger = WriteLedger(run_id, self._log.regions)
        self._started_at: float | None = None
        self._stopped = False
        #: CPU seconds spent sending, over every process, from the start to ``stop`` (in
        #: this process: all of the process's CPU in that time)
        self.cpu_seconds = 0.0

    @classmethod
    def from_spec(
        cls,
        traffic: Traffic,
        entry_url: str | None,
        *,
        regions: Sequence[str],
        run_id: str,
        region_urls: dict[str, str] | None = None,
        seed: int | None = None,
        workers: int | None = None,
    ) -> TrafficGenerator:
        """Build from a GameDay's ``spec.traffic``; homes default to every region."""
        plan = load_plan(traffic, regions)
        probe: Probe | None = None
        if isinstance(traffic.probe, HttpProbeSpec):
            probe = http_probe(traffic.probe, entry_url, region_urls or {}, plan.homes)
        return cls(
            entry_url,
            write_ratio=traffic.write_ratio,
            timeout=traffic.timeout,
            keys=traffic.keys,
            run_id=run_id,
            region_urls=region_urls,
            seed=seed,
            plan=plan,
            probe=probe,
            workers=workers,
        )

    # ------------------------------------------------------------------ lifecycle

    def _config(self, worker: int, workers: int) -> RunnerConfig:
        return RunnerConfig(
            plan=self.plan,
            probe=self.probe,
            timeout=self.timeout,
            max_in_flight=max(1, math.ceil(self.max_in_flight / max(1, workers))),
            run_id=self.run_id,
            wall_offset=self._wall_offset,
            seed=self._seed,
            worker=worker,
            workers=workers,
        )

    async def start(self, duration: float | None = None) -> None:
        """Start sending; with ``duration``, the schedule ends after that many seconds
        (``finished()`` then returns), otherwise it runs until ``stop``. With worker
        processes this returns once they are all ready and share one start instant."""
        if self._runner is not None or self._pool is not None or self._stopped:
            raise RuntimeError("a TrafficGenerator runs once")
        span = MAX_RUN_SECONDS if duration is None else min(float(duration), MAX_RUN_SECONDS)
        if self.workers == 0:
            self._runner = Runner(self._config(0, 1))
            self.counters = self._runner.counters
            t0 = time.monotonic()
            self._runner.begin(t0, span)
            self._started_at = t0 + self._wall_offset
            return
        n = self.workers
        self._pool = WorkerPool([self._config(w, n) for w in range(n)], self.counters)
        try:
            await self._pool.start(span)
        except WorkerError as exc:
            raise TargetUnreachableError(f"traffic generator: {exc}") from exc
        self._started_at = self._pool.started_at

    async def finished(self) -> None:
        """Wait until the schedule is over (the duration given to ``start`` elapsed)."""
        if self._runner is not None:
            await self._runner.finished()
        elif self._pool is not None:
            await self._pool.finished()

    async def stop(self, drain_timeout: float) -> None:
        """Stop scheduling, give in-flight requests up to ``drain_timeout`` seconds, drop
        the rest (counted in ``counters.cancelled``, not recorded)."""
        if self._stopped:
            return
        self._stopped = True
        if self._runner is not None:
            await self._runner.stop(drain_timeout)
            self._log, self._ledger = self._runner.log, self._runner.ledger
            self.cpu_seconds = self._runner.cpu_seconds
        elif self._pool is not None:
            await self._pool.stop(drain_timeout)
            self.cpu_seconds = self._pool.cpu_seconds
            for failure in self._pool.failures():
                # its requests in flight are counted as cancelled; what it recorded is lost
                log.warning("traffic: %s", failure, extra={"run_id": self.run_id})
            if self._pool.log is not None and self._pool.ledger is not None:
                self._log, self._ledger = self._pool.log, self._pool.ledger

    async def run(self, duration: float, drain_timeout: float | None = None) -> None:
        """Send for ``duration`` seconds, then drain (default: one request timeout)."""
        await self.start(duration)
        try:
            await self.finished()
        finally:
            await self.stop(self.timeout if drain_timeout is None else drain_timeout)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(self.timeout)

    # ------------------------------------------------------------------ results

    @property
    def started_at(self) -> float | None:
        """Unix time of the schedule's start (the first request is due then or later)."""
        return self._started_at

    def samples(self) -> list[Sample]:
        """Every completed request (and every overload), ordered by ``sent_at``."""
        return self._log.samples()

    def acked_writes(self) -> list[AckedWrite]:
        """Every write acknowledged with 2xx, in acknowledgement order per worker."""
        return self._ledger.acked_writes()

    def send_errors(self) -> list[float]:
        """Actual minus scheduled send instant (seconds) of every request sent."""
        return self._log.send_errors()

    def send_error_p99(self) -> float | None:
        """The 99th percentile of ``send_errors()`` (None before any request was sent)."""
        errors = sorted(self.send_errors())
        if not errors:
            return None
        return errors[min(len(errors) - 1, math.ceil(0.99 * len(errors)) - 1)]

    @property
    def sample_log(self) -> SampleLog:
        """The compact columns behind ``samples()``, for consumers that scan millions."""
        return self._log
