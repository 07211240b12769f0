"""Open-loop traffic: the load of a GameDay, its high-resolution failover probe and the
ledger of acknowledged writes that ``lostWrites`` reads back.

Open loop means request ``i`` is sent at ``t0 + i / rate`` whatever happened to the
requests before it. A closed-loop client (send, wait, send) slows down exactly when the
system does and so under-reports an outage (coordinated omission); here a slow or hung
system gets the same request rate, every request runs in its own task under its own
timeout, and the number in flight is capped. A request that would exceed the cap is not
skipped: it is recorded as a client-side failure with ``error="overload"``.

Timing: everything is measured on the monotonic clock and converted to unix seconds through
a single anchor taken at construction, so differences between samples are exact.
"""

from __future__ import annotations

import asyncio
import math
import random
import resource
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import aiohttp
from yarl import URL

from chaosaa.model import AckedWrite, Sample
from chaosaa.spec.model import Traffic
from chaosaa.traffic.recording import (
    RegionTable,
    SampleLog,
    WriteLedger,
    key_name,
    write_value,
)

HOME_HEADER = "X-Chaosaa-Home"
REGION_HEADER = "X-Chaosaa-Region"

#: hard bound on one run, whatever the caller asks for
MAX_RUN_SECONDS = 24 * 3600.0
#: file descriptors kept free for everything else in the process
_FD_RESERVE = 256
_MIN_IN_FLIGHT = 16
#: parsed request URLs are cached per home for key spaces up to this size
_URL_CACHE_KEYS = 10_000
#: the deadline timer fires at most this often (seconds); bounds timeout lateness
_REAP_GRANULARITY = 0.001


@dataclass(slots=True)
class RegionCounts:
    ok: int = 0
    errors: int = 0


@dataclass(slots=True)
class TrafficCounters:
    """Live counters, updated in place; cheap to read from a progress display.

    ``ok`` + ``errors`` = completed samples; ``errors`` includes ``overloaded``.
    ``by_region`` is keyed by the serving region (``X-Chaosaa-Region``) and counts only
    answered requests; ``by_home`` is keyed by the home region and counts every sample.
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
    wanted = max(_MIN_IN_FLIGHT, math.ceil(rate * timeout * 2))
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        wanted = min(wanted, max(_MIN_IN_FLIGHT, soft - _FD_RESERVE))
    return wanted


class _Deadlines:
    """Every request's timeout on one timer instead of one timer per request.

    Requests start in schedule order, so their deadlines arrive sorted and a FIFO is a
    priority queue. In healthy operation the timer fires about once per ``timeout``
    (finished requests are dropped from the head in bulk); under a hang it fires at most
    once per ``_REAP_GRANULARITY`` and cancels every request past its deadline.
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._queue: deque[tuple[float, asyncio.Task[None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        #: tasks cancelled because their deadline passed (as opposed to by ``stop``)
        self.expired: set[asyncio.Task[None]] = set()

    def add(self, task: asyncio.Task[None], started: float) -> None:
        deadline = started + self._timeout
        self._queue.append((deadline, task))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._reap)

    def _reap(self) -> None:
        self._timer = None
        now = time.monotonic()
        queue = self._queue
        while queue:
            deadline, task = queue[0]
            if task.done():
                queue.popleft()
            elif deadline <= now:
                queue.popleft()
                self.expired.add(task)
                task.cancel()
            else:
                break
        if queue:
            when = max(queue[0][0], now + _REAP_GRANULARITY)
            self._timer = asyncio.get_running_loop().call_at(when, self._reap)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self.expired.clear()


def _error_class(exc: BaseException) -> str:
    # Order matters: aiohttp's timeout errors are also OSErrors, its connector errors
    # are also ClientOSErrors.
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | OSError):
        return "reset"
    return "protocol"


class TrafficGenerator:
    """Open-loop HTTP load against a KV API (``GET``/``PUT {url}/kv/{key}``).

    ``entry_url`` is the global entry point; with ``entry_url=None`` each request goes
    straight to ``region_urls[home]``. ``homes`` are claimed round-robin in the
    ``X-Chaosaa-Home`` header (empty: no header). Use as::

        gen = TrafficGenerator(url, rate=50, write_ratio=0.3, timeout=1, keys=200,
                               homes=["us", "eu"], run_id="r1")
        await gen.run(30)            # or: await gen.start(); ...; await gen.stop(2)
        gen.samples(), gen.acked_writes(), gen.counters
    """

    def __init__(
        self,
        entry_url: str | None,
        *,
        rate: float,
        write_ratio: float,
        timeout: float,
        keys: int,
        homes: Sequence[str],
        run_id: str,
        region_urls: dict[str, str] | None = None,
        max_in_flight: int | None = None,
        seed: int | None = None,
    ) -> None:
        if rate <= 0 or timeout <= 0 or keys < 1 or not 0 <= write_ratio <= 1:
            raise ValueError("need rate > 0, timeout > 0, keys >= 1, 0 <= write_ratio <= 1")
        if not run_id:
            raise ValueError("run_id must not be empty")
        self.rate = float(rate)
        self.write_ratio = float(write_ratio)
        self.timeout = float(timeout)
        self.keys = int(keys)
        self.homes: list[str | None] = list(homes) or [None]
        self.run_id = run_id
        self.region_urls = dict(region_urls or {})
        self.max_in_flight = max_in_flight or default_max_in_flight(self.rate, self.timeout)
        self.counters = TrafficCounters()

        self._base_urls = [str(URL(self._base_url(entry_url, home))) for home in self.homes]
        self._url_cache: list[dict[int, URL]] = [{} for _ in self.homes]
        self._deadlines = _Deadlines(self.timeout)
        self._headers: list[dict[str, str]] = [
            {HOME_HEADER: home} if home is not None else {} for home in self.homes
        ]
        self._region_fallback = entry_url is None  # direct to a region: it is the server
        self._rng = random.Random(seed)
        self._regions = RegionTable([h for h in self.homes if h is not None])
        self._home_index = [self._regions.index(h) for h in self.homes]
        self._log = SampleLog(self._regions)
        self._ledger = WriteLedger(run_id, self._regions)
        self._wall_offset = _wall_clock_offset()
        self._session: aiohttp.ClientSession | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started_at: float | None = None
        self._stopped = False

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
    ) -> TrafficGenerator:
        """Build from a GameDay's ``spec.traffic``; ``homes`` default to every region."""
        return cls(
            entry_url,
            rate=traffic.rate,
            write_ratio=traffic.write_ratio,
            timeout=traffic.timeout,
            keys=traffic.keys,
            homes=list(traffic.homes) or list(regions),
            run_id=run_id,
            region_urls=region_urls,
            seed=seed,
        )

    def _base_url(self, entry_url: str | None, home: str | None) -> str:
        if entry_url is not None:
            return entry_url.rstrip("/") + "/kv/"
        if home is None or home not in self.region_urls:
            raise ValueError("without entry_url every home needs a URL in region_urls")
        return self.region_urls[home].rstrip("/") + "/kv/"

    # ------------------------------------------------------------------ lifecycle

    async def start(self, duration: float | None = None) -> None:
        """Start sending; with ``duration``, the schedule ends after that many seconds
        (``finished()`` then returns), otherwise it runs until ``stop``."""
        if self._session is not None or self._stopped:
            raise RuntimeError("a TrafficGenerator runs once")
        span = MAX_RUN_SECONDS if duration is None else min(float(duration), MAX_RUN_SECONDS)
        connector = aiohttp.TCPConnector(
            limit=self.max_in_flight,  # never queue inside aiohttp: that would close the loop
            limit_per_host=0,
            ttl_dns_cache=300,
            keepalive_timeout=30,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),  # each request has its own deadline
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            headers={"User-Agent": "chaosaa-traffic"},
        )
        self._scheduler = asyncio.create_task(self._schedule(span), name="traffic-scheduler")

    async def finished(self) -> None:
        """Wait until the schedule is over (the duration given to ``start`` elapsed)."""
        if self._scheduler is not None:
            await asyncio.wait({self._scheduler})

    async def stop(self, drain_timeout: float) -> None:
        """Stop scheduling, give in-flight requests up to ``drain_timeout`` seconds, cancel
        the rest (counted in ``counters.cancelled``, not recorded) and close the session."""
        self._stopped = True
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=max(0.0, drain_timeout))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
                # A cancelled request never reaches its bookkeeping; settle it here.
                lost = sum(1 for t in pending if t.cancelled() or not t.done())
                self.counters.cancelled += lost
                self.counters.in_flight -= lost
        self._deadlines.close()
        if self._session is not None:
            await self._session.close()

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
        """Unix time of the first scheduled request."""
        return self._started_at

    def samples(self) -> list[Sample]:
        """Every completed request (and every overload), ordered by ``sent_at``."""
        return self._log.samples()

    def acked_writes(self) -> list[AckedWrite]:
        """Every write acknowledged with 2xx, in acknowledgement order."""
        return self._ledger.acked_writes()

    def send_errors(self) -> list[float]:
        """Actual minus scheduled send instant (seconds) of every request sent."""
        return self._log.send_errors()

    @property
    def sample_log(self) -> SampleLog:
        """The compact columns behind ``samples()``, for consumers that scan millions."""
        return self._log

    # ------------------------------------------------------------------ internals

    async def _schedule(self, span: float) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate
        total = max(1, math.floor(span * self.rate + 1e-9))
        t0 = loop.time()
        self._started_at = t0 + self._wall_offset
        seq = 0
        while seq < total:
            now = loop.time()
            due = t0 + seq * interval
            if due > now:
                await asyncio.sleep(due - now)
                continue
            # Everything already due goes out now: after a late wake-up the schedule
            # catches up instead of shifting (that would be coordinated omission again).
            while due <= now and seq < total:
                self._launch(seq, due)
                seq += 1
                due = t0 + seq * interval
            if due <= loop.time():
                await asyncio.sleep(0)  # still behind: let the launched requests run first

    def _launch(self, seq: int, due: float) -> None:
        counters = self.counters
        counters.scheduled += 1
        slot = seq % len(self.homes)
        write = self._rng.random() < self.write_ratio
        key = self._rng.randrange(self.keys)
        if counters.in_flight >= self.max_in_flight:
            self._record_overload(due, slot, write)
            return
        counters.in_flight += 1
        task = asyncio.create_task(self._request(seq, due, slot, key, write))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _url(self, slot: int, key: int) -> URL:
        cache = self._url_cache[slot]
        url = cache.get(key)
        if url is None:
            # The base is already normalised and keys are plain ASCII: skip re-parsing.
            url = URL(self._base_urls[slot] + key_name(key), encoded=True)
            if len(cache) < _URL_CACHE_KEYS:
                cache[key] = url
        return url

    async def _request(self, seq: int, due: float, slot: int, key: int, write: bool) -> None:
        session = self._session
        assert session is not None
        counters = self.counters
        url = self._url(slot, key)
        headers = self._headers[slot]
        status = 0
        served_by: str | None = None
        error: str | None = None
        task = asyncio.current_task()
        assert task is not None
        sent = time.monotonic()
        counters.sent += 1
        self._deadlines.add(task, sent)
        try:
            if write:
                body = write_value(self.run_id, seq).encode()
                async with session.put(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status, served_by = resp.status, resp.headers.get(REGION_HEADER)
            else:
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                    status, served_by = resp.status, resp.headers.get(REGION_HEADER)
        except asyncio.CancelledError:
            if task not in self._deadlines.expired:
                raise  # stop() gave up on it
            self._deadlines.expired.discard(task)
            task.uncancel()
            status, error = 0, "timeout"
        except Exception as exc:  # every failure is a sample; classify, never propagate
            status, error = 0, _error_class(exc)
            if task in self._deadlines.expired:  # cancelled by its deadline, surfaced late
                self._deadlines.expired.discard(task)
                error = "timeout"
        done = time.monotonic()
        counters.in_flight -= 1
        if served_by is None and self._region_fallback and error is None:
            served_by = self.homes[slot]
        self._record(sent, done, sent - due, status, served_by, slot, write, error)
        if write and 200 <= status < 300:
            self._ledger.append(
                key,
                seq,
                sent + self._wall_offset,
                done + self._wall_offset,
                self._regions.index(served_by),
            )
            counters.acked_writes += 1

    def _record(
        self,
        sent: float,
        done: float,
        send_error: float,
        status: int,
        served_by: str | None,
        slot: int,
        write: bool,
        error: str | None,
    ) -> None:
        counters = self.counters
        ok = 0 < status < 500
        if ok:
            counters.ok += 1
        else:
            counters.errors += 1
            if error == "timeout":
                counters.timeouts += 1
        home = self.homes[slot]
        if home is not None:
            _bump(counters.by_home, home, ok)
        if served_by is not None and error is None:
            _bump(counters.by_region, served_by, ok)
        self._log.append(
            sent + self._wall_offset,
            done - sent,
            send_error,
            status,
            self._regions.index(served_by),
            self._home_index[slot],
            write,
            error,
        )

    def _record_overload(self, due: float, slot: int, write: bool) -> None:
        counters = self.counters
        counters.errors += 1
        counters.overloaded += 1
        home = self.homes[slot]
        if home is not None:
            _bump(counters.by_home, home, False)
        self._log.append(
            due + self._wall_offset, 0.0, math.nan, 0, 0, self._home_index[slot], write, "overload"
        )


def _bump(table: dict[str, RegionCounts], region: str, ok: bool) -> None:
    counts = table.get(region)
    if counts is None:
        counts = table[region] = RegionCounts()
    if ok:
        counts.ok += 1
    else:
        counts.errors += 1
