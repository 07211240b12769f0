"""One process's share of an open-loop schedule: timing, sending, recording.

Worker ``w`` of ``n`` sends requests ``w, w + n, ...`` of every stream of the load plan
(``chaosaa.traffic.profile``), each at its due instant ``t0 + offset``, whatever happened to
the requests before it. Every request gets its own deadline; the number in flight is
capped, and a request due while the cap is reached is not skipped: it is recorded as a
failure with ``error="overload"`` at its due instant. When the process falls behind
(a stall, a burst of answers), every request already due is sent at once, in order, in
batches that let answers in between.

Timing: instants are ``time.monotonic()`` (one clock for every process of the machine),
converted to unix seconds by adding one ``wall_offset`` that the parent measured once and
handed to every worker, so samples of different workers are exact to compare.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from chaosaa.traffic.client import Exchange, HttpClient
from chaosaa.traffic.probes import Probe, Request
from chaosaa.traffic.profile import LoadPlan
from chaosaa.traffic.recording import RegionTable, SampleLog, WriteLedger
from chaosaa.traffic.ticker import Ticker

#: what the runner hands the client with each request: sent, send error, home, seq, request
_Context = tuple[float, float, int, int, Request]

#: requests sent back to back at most before answers get a turn (when behind schedule)
_BATCH = 32


@dataclass(slots=True)
class RegionCounts:
    ok: int = 0
    errors: int = 0


@dataclass(slots=True)
class TrafficCounters:
    """Live counters, updated in place; cheap to read from a progress display.

    ``ok`` + ``errors`` = completed samples; ``errors`` includes ``overloaded``.
    ``by_region`` is keyed by the serving region and counts only answered requests;
    ``by_home`` is keyed by the home region and counts every sample.
    """

    scheduled: int = 0
    sent: int = 0
    in_flight: int = 0
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    overloaded: int = 0
    #: requests still in flight when ``stop`` gave up draining (not recorded as samples)
    cancelled: int = 0
    acked_writes: int = 0
    by_region: dict[str, RegionCounts] = field(default_factory=dict)
    by_home: dict[str, RegionCounts] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)

    def set_sum(self, snapshots: list[dict[str, Any]]) -> None:
        """Become the sum of other processes' snapshots (in place: readers keep a reference)."""
        for name in _COUNTS:
            setattr(self, name, sum(s[name] for s in snapshots))
        for table in ("by_region", "by_home"):
            merged: dict[str, RegionCounts] = {}
            for s in snapshots:
                for region, counts in s[table].items():
                    into = merged.setdefault(region, RegionCounts())
                    into.ok += counts["ok"]
                    into.errors += counts["errors"]
            setattr(self, table, merged)


_COUNTS = (
    "scheduled",
    "sent",
    "in_flight",
    "ok",
    "errors",
    "timeouts",
    "overloaded",
    "cancelled",
    "acked_writes",
)


@dataclass(frozen=True)
class RunnerConfig:
    """What a worker needs; picklable."""

    plan: LoadPlan
    probe: Probe
    timeout: float
    max_in_flight: int
    run_id: str
    wall_offset: float  # unix seconds minus monotonic seconds
    seed: int | None = None
    worker: int = 0
    workers: int = 1


class Runner:
    """Sends one worker's share of the schedule from the running event loop."""

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self.counters = TrafficCounters()
        probe = config.probe
        self._probe = probe
        self._homes = probe.homes
        self.regions = RegionTable([h for h in probe.homes if h is not None])
        self._home_index = [self.regions.index(h) for h in probe.homes]
        self.log = SampleLog(self.regions)
        self.ledger = WriteLedger(config.run_id, self.regions)
        seed = None if config.seed is None else config.seed * 1_000_003 + config.worker
        self._rng = random.Random(seed)
        self._wall = config.wall_offset
        self._client: HttpClient | None = None
        self._ticker: Ticker | None = None
        self._schedule: Any = None
        self._next: tuple[float, int, int] | None = None
        self._t0 = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finished = asyncio.Event()
        self._drained = asyncio.Event()
        self._stopping = False
        self._cpu_at_begin = 0.0
        #: CPU seconds this process used from ``begin`` to the end of ``stop``
        self.cpu_seconds = 0.0

    @property
    def started_at(self) -> float:
        """Unix time of the schedule's start (t0)."""
        return self._t0 + self._wall

    @property
    def precise(self) -> bool:
        return self._ticker is not None and self._ticker.precise

    def begin(self, t0: float, span: float) -> None:
        """Start sending at monotonic instant ``t0``; the schedule ends ``span`` seconds
        later (``finished`` then returns). Needs a running loop."""
        if self._client is not None:
            raise RuntimeError("a Runner runs once")
        self._loop = asyncio.get_running_loop()
        probe = self._probe
        self._client = HttpClient(
            probe.origins,
            self._done,
            timeout=self.config.timeout,
            header=probe.region_header,
            read_body=probe.read_body,
        )
        self._t0 = t0
        self._cpu_at_begin = time.process_time()
        cfg = self.config
        self._schedule = iter(cfg.plan.schedule(cfg.worker, cfg.workers, span))
        self._ticker = Ticker(self._loop, self._tick)
        self._advance()

    async def finished(self) -> None:
        await self._finished.wait()

    async def stop(self, drain_timeout: float) -> None:
        """Stop sending; give requests in flight up to ``drain_timeout`` seconds, then
        abandon the rest (counted in ``counters.cancelled``, not recorded)."""
        self._stopping = True
        self._close_schedule()
        client = self._client
        if client is None:
            return
        if client.in_flight:
            self._drained.clear()
            try:
                async with asyncio.timeout(max(0.0, drain_timeout)):
                    await self._drained.wait()
            except TimeoutError:
                pass
        lost = client.in_flight
        self.counters.cancelled += lost
        self.counters.in_flight -= lost
        await client.close()
        self.cpu_seconds = time.process_time() - self._cpu_at_begin

    # ------------------------------------------------------------------ schedule

    def _advance(self) -> None:
        item = next(self._schedule, None)
        if item is None:
            self._next = None
            self._close_schedule()
            return
        offset, seq, home = item
        self._next = (self._t0 + offset, seq, home)
        assert self._ticker is not None
        self._ticker.arm(self._next[0])

    def _tick(self) -> None:
        if self._stopping:
            return
        now = time.monotonic()
        schedule = self._schedule
        nxt = self._next
        t0 = self._t0
        for _ in range(_BATCH):
            if nxt is None or nxt[0] > now:
                break
            self._fire(*nxt)
            item = next(schedule, None)
            nxt = None if item is None else (t0 + item[0], item[1], item[2])
        else:
            if nxt is not None and nxt[0] <= now:  # still behind: let answers in first
                self._next = nxt
                assert self._loop is not None
                self._loop.call_soon(self._tick)
                return
        self._next = nxt
        if nxt is None:
            self._close_schedule()
        else:
            assert self._ticker is not None
            self._ticker.arm(nxt[0])

    def _close_schedule(self) -> None:
        self._next = None
        if self._ticker is not None:
            self._ticker.close()
            self._ticker = None
        self._finished.set()

    def _fire(self, due: float, seq: int, home: int) -> None:
        counters = self.counters
        counters.scheduled += 1
        request = self._probe.request(home, seq, self._rng)
        client = self._client
        assert client is not None
        if client.in_flight >= self.config.max_in_flight:
            self._overload(due, home, request)
            return
        sent = time.monotonic()
        counters.sent += 1
        counters.in_flight += 1
        client.send(
            request.origin,
            request.data,
            head=request.head,
            context=(sent, sent - due, home, seq, request),
        )

    # ------------------------------------------------------------------ recording

    def _done(self, x: Exchange) -> None:
        context: _Context = x.context  # type: ignore[assignment]
        sent, send_error, home, seq, request = context
        done = time.monotonic()
        counters = self.counters
        counters.in_flight -= 1
        status = x.status
        if x.error is None:
            verdict = self._probe.judge(home, request, x)
            error, served_by = verdict.error, verdict.served_by
        else:
            error, served_by, verdict = x.error, None, None
            status = 0
        ok = error is None and 0 < status < 500
        if ok:
            counters.ok += 1
        else:
            counters.errors += 1
            if error == "timeout":
                counters.timeouts += 1
        name = self._homes[home]
        if name is not None:
            _bump(counters.by_home, name, ok)
        if served_by is not None:
            _bump(counters.by_region, served_by, ok)
        region = self.regions.index(served_by)
        self.log.append(
            sent + self._wall,
            done - sent,
            send_error,
            status,
            region,
            self._home_index[home],
            request.write,
            error,
        )
        if verdict is not None and verdict.acknowledged:
            self.ledger.append(request.key, seq, sent + self._wall, done + self._wall, region)
            counters.acked_writes += 1
        if self._stopping and self._client is not None and self._client.in_flight == 0:
            self._drained.set()

    def _overload(self, due: float, home: int, request: Request) -> None:
        counters = self.counters
        counters.errors += 1
        counters.overloaded += 1
        name = self._homes[home]
        if name is not None:
            _bump(counters.by_home, name, False)
        self.log.append(
            due + self._wall,
            0.0,
            math.nan,
            0,
            0,
            self._home_index[home],
            request.write,
            "overload",
        )


def _bump(table: dict[str, RegionCounts], region: str, ok: bool) -> None:
    counts = table.get(region)
    if counts is None:
        counts = table[region] = RegionCounts()
    if ok:
        counts.ok += 1
    else:
        counts.errors += 1
