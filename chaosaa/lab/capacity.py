"""Service capacity of a region: how much a demo node serves before it saturates.

A region's service is a pool of ``concurrency`` workers, each spending ``serviceTime`` on
a request before the store does its part; up to ``queue`` requests wait for a worker in
arrival order, and one more is refused at once with 503 (load shedding, as a server with
a full accept queue or an overloaded proxy does). Its ceiling is
``concurrency / serviceTime`` requests per second. Below it a request takes about
``serviceTime``; above it the queue fills, so latency grows by up to ``queue / ceiling``,
and then every request beyond the ceiling is refused.

The service time is *waited*, not burnt on the CPU. Every region of the lab shares this
machine's cores (two, busy, here): a CPU cost would make a region's capacity depend on
what else runs, and one saturated region would slow the others down, which separate
regions never do. A waited service time gives each region a ceiling of its own that
holds on any machine, so a region absorbing another's clients saturates at the same load
every time. The node's own CPU cost (HTTP, SQLite) comes on top, and is small at the
rates a lab runs.

Unset fields mean no limit: no ``concurrency`` serves every request at once (a
``serviceTime`` then only adds latency), no ``queue`` lets requests wait until their
clients give up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from chaosaa.durations import format_duration, parse_duration

#: bounds of a capacity, so a typo cannot make a node wait an hour per request
MAX_CONCURRENCY = 100_000
MAX_QUEUE = 1_000_000
MAX_SERVICE_TIME = 60.0
_FIELDS = ("concurrency", "serviceTime", "queue")


class Overloaded(Exception):
    """Every worker is busy and the queue is full: the request is refused."""


@dataclass(frozen=True)
class Capacity:
    """One region's capacity (see the module docstring); the default is unlimited."""

    concurrency: int | None = None
    service_time: float = 0.0
    queue: int | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> Capacity:
        """From ``{"concurrency": 4, "serviceTime": "25ms", "queue": 8}`` (null or absent:
        no limit); ValueError names the field."""
        if doc is None:
            return cls()
        if not isinstance(doc, Mapping):
            raise ValueError("capacity must be an object")
        unknown = sorted(set(doc) - set(_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}")
        return cls(
            concurrency=_count(doc.get("concurrency"), "concurrency", 1, MAX_CONCURRENCY),
            service_time=_service_time(doc.get("serviceTime")),
            queue=_count(doc.get("queue"), "queue", 0, MAX_QUEUE),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "serviceTime": format_duration(self.service_time),
            "queue": self.queue,
            "ceiling": None if math.isinf(self.ceiling) else self.ceiling,
        }

    @property
    def ceiling(self) -> float:
        """Requests per second the region serves at most (inf: no limit)."""
        if self.concurrency is None or self.service_time <= 0:
            return math.inf
        return self.concurrency / self.service_time

    @property
    def unlimited(self) -> bool:
        return self.concurrency is None and self.service_time <= 0

    def describe(self) -> str:
        """``4 x 25ms = 160 req/s, queue 8`` (or ``unlimited``)."""
        if self.unlimited:
            return "unlimited"
        workers = "unlimited workers" if self.concurrency is None else f"{self.concurrency}"
        text = f"{workers} x {format_duration(self.service_time)}"
        if not math.isinf(self.ceiling):
            text += f" = {self.ceiling:g} req/s"
        queue = "unbounded" if self.queue is None else str(self.queue)
        return f"{text}, queue {queue}" if self.concurrency is not None else text


def _count(value: Any, name: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high} (or null: no limit)")
    return value


def _service_time(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("serviceTime must be a duration such as 25ms")
    try:
        seconds = float(value) if not isinstance(value, str) else parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"serviceTime: {exc}") from None
    if not 0 <= seconds <= MAX_SERVICE_TIME:
        raise ValueError(f"serviceTime must be from 0 to {MAX_SERVICE_TIME:g}s")
    return seconds


class Limiter:
    """Admits requests to a :class:`Capacity`: at most ``concurrency`` in service, the
    next ``queue`` waiting in arrival order, the rest refused. The capacity can change
    while requests are in service; they finish on the old terms."""

    def __init__(self, capacity: Capacity | None = None) -> None:
        self.capacity = capacity or Capacity()
        self.in_service = 0
        self.rejected = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def configure(self, capacity: Capacity) -> None:
        self.capacity = capacity
        self._hand_over()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold a worker for one request, its service time included; yields the seconds
        spent waiting for it. Raises :class:`Overloaded` when the queue is full."""
        waited = await self._acquire()
        try:
            if self.capacity.service_time > 0:
                await asyncio.sleep(self.capacity.service_time)
            yield waited
        finally:
            self.in_service -= 1
            self._hand_over()

    async def _acquire(self) -> float:
        if self._free() and not self._waiters:
            self.in_service += 1
            return 0.0
        limit = self.capacity.queue
        if limit is not None and len(self._waiters) >= limit:
            self.rejected += 1
            raise Overloaded(
                f"{self.in_service} requests in service and {len(self._waiters)} waiting"
            )
        started = time.monotonic()
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(ticket)
        try:
            await ticket
        except asyncio.CancelledError:
            if ticket.done() and not ticket.cancelled():
                # the worker was handed over as the waiter went away: pass it on
                self.in_service -= 1
                self._hand_over()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(ticket)
            raise
        return time.monotonic() - started

    def _free(self) -> bool:
        limit = self.capacity.concurrency
        return limit is None or self.in_service < limit

    def _hand_over(self) -> None:
        """Give free workers to the longest waiters (the worker count moves with them)."""
        while self._waiters and self._free():
            ticket = self._waiters.popleft()
            if not ticket.done():
                self.in_service += 1
                ticket.set_result(None)


class CapacityCollector(Collector):
    """The region's capacity, its use and its refusals, read at scrape time."""

    def __init__(self, region: str, limiter: Limiter) -> None:
        self._region = region
        self._limiter = limiter

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        cap = self._limiter.capacity
        inf = math.inf
        gauges = (
            (
                "chaosaa_demo_capacity_concurrency",
                "Requests the region serves at once (+Inf: no limit)",
                inf if cap.concurrency is None else cap.concurrency,
            ),
            (
                "chaosaa_demo_capacity_service_time_seconds",
                "Time each request holds a worker, before the store's own time",
                cap.service_time,
            ),
            (
                "chaosaa_demo_capacity_queue_limit",
                "Requests that may wait for a worker before more are refused (+Inf: no limit)",
                inf if cap.queue is None else cap.queue,
            ),
            (
                "chaosaa_demo_capacity_requests_per_second",
                "The region's ceiling: concurrency / service time (+Inf: no limit)",
                cap.ceiling,
            ),
            ("chaosaa_demo_in_service", "Requests holding a worker now", self._limiter.in_service),
            ("chaosaa_demo_queued", "Requests waiting for a worker now", self._limiter.queued),
        )
        for name, doc, value in gauges:
            family = GaugeMetricFamily(name, doc, labels=["region"])
            family.add_metric([self._region], float(value))
            yield family
        rejected = CounterMetricFamily(
            "chaosaa_demo_rejected",
            "Requests refused with 503 because every worker was busy and the queue full",
            labels=["region"],
        )
        rejected.add_metric([self._region], float(self._limiter.rejected))
        yield rejected
