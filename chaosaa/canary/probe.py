"""Datastore canaries: replication lag, lost writes and divergence at the database level,
with no change to the application.

Per region, a writer inserts one canary row every ``interval`` into chaosaa's own table
(through that region's connection). Per link ``source > target``, a poller asks the
target every ``poll_interval`` which of the source's acknowledged canaries it can see.

**Canary lag** of one canary on one link: visible in the target at ``t_v`` minus committed
in the source at ``t_c``. chaosaa's own clock brackets both: ``written_at <= t_c <=
acked_at`` (before the INSERT, after its COMMIT returned) and ``poll_prev_start < t_v <=
poll_end`` (the previous poll did not see it, this one did). So the lag lies in
``[poll_prev_start - acked_at, poll_end - written_at]``; it is reported as the middle of
that interval with half its width as the error bound (= half of one poll interval plus
poll duration plus write duration). No clock of the databases is used: no clock skew.

A canary that the target has not seen yet is **pending**, never lost: its age
(``now - acked_at``) is a lower bound of the link's lag, so the lag series keeps growing
1 s per second while a link is cut. Only :meth:`CanaryProbe.verify`, after the convergence
timeout, reads every acknowledged canary back from every region: **lost** = acknowledged
and missing (or different) in some region, **divergent** = regions disagree on a canary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from chaosaa.canary.stores import CanaryStore, CanaryStoreError

log = logging.getLogger(__name__)

#: at most this many pending canaries are asked about in one poll (oldest first)
POLL_BATCH = 500
#: how often verify re-reads every region while they disagree on a canary
REREAD_INTERVAL = 0.25


@dataclass
class Canary:
    origin: str
    seq: int
    value: str
    written_at: float
    acked_at: float
    #: target region -> (lag estimate, error bound) once seen
    seen: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class LagPoint:
    """The lag of one link at one poll: the largest of the canaries seen by this poll and the
    age of the oldest still pending one (a lower bound)."""

    at: float
    lag: float
    bound: float
    pending: int


@dataclass
class LinkState:
    source: str
    target: str
    pending: dict[int, Canary] = field(default_factory=dict)
    series: list[LagPoint] = field(default_factory=list)
    last_poll_start: float | None = None
    poll_errors: int = 0
    last_error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.source}>{self.target}"


@dataclass(frozen=True)
class LinkSummary:
    source: str
    target: str
    canaries_seen: int
    pending: int
    peak_lag: float | None
    #: half-width of the widest interval among the samples: the figure's resolution
    resolution: float | None
    poll_errors: int


@dataclass(frozen=True)
class Integrity:
    acknowledged: int
    lost: int
    divergent: int
    #: canaries acknowledged by the source but not yet everywhere when the timeout ran out
    lost_canaries: list[str]
    divergent_canaries: list[str]
    unreadable_regions: dict[str, str]
    converged_after: float | None


@dataclass
class RegionWriter:
    region: str
    next_seq: int = 1
    acked: int = 0
    errors: int = 0
    last_error: str | None = None
    #: every write attempt: (when it was sent, when it ended, acknowledged?)
    attempts: list[tuple[float, float, bool]] = field(default_factory=list)


class CanaryProbe:
    """Writes canaries in every region and watches them arrive in every other region."""

    def __init__(
        self,
        stores: Mapping[str, CanaryStore],
        *,
        interval: float = 0.2,
        poll_interval: float = 0.05,
        run_id: str | None = None,
    ) -> None:
        if interval <= 0 or poll_interval <= 0:
            raise ValueError("interval and poll_interval must be > 0")
        self.stores = dict(stores)
        self.interval = interval
        self.poll_interval = poll_interval
        self.run_id = run_id or f"c{int(time.time())}-{secrets.token_hex(3)}"
        self.canaries: list[Canary] = []
        self.writers = {r: RegionWriter(r) for r in self.stores}
        self.links = {(s, t): LinkState(s, t) for s in self.stores for t in self.stores if s != t}
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect to every region and create the canary table where it is missing."""
        for store in self.stores.values():
            await store.open()
        for region, store in self.stores.items():
            try:
                await store.ensure_table()
            except CanaryStoreError as exc:
                # A read-only region (a standby) cannot create it: it must arrive by
                # replication. Writes there will fail and be counted.
                log.info("canary table not created in %s: %s", region, exc)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._write_loop(w)) for w in self.writers.values()]
        self._tasks += [asyncio.create_task(self._poll_loop(link)) for link in self.links.values()]

    async def stop_writing(self) -> None:
        """Stop the writers and pollers (verify polls on its own)."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def close(self) -> None:
        await self.stop_writing()
        for store in self.stores.values():
            with contextlib.suppress(Exception):
                await store.close()

    # -- writing ------------------------------------------------------------------------
    async def _write_loop(self, writer: RegionWriter) -> None:
        store = self.stores[writer.region]
        next_at = time.monotonic()
        while True:
            await self.write_one(writer, store)
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:  # a slow write (cut link, timeout): skip the missed slots
                next_at = now
            await asyncio.sleep(next_at - now)

    async def write_one(self, writer: RegionWriter, store: CanaryStore) -> Canary | None:
        seq = writer.next_seq
        writer.next_seq += 1
        value = secrets.token_hex(8)
        written_at = time.time()
        try:
            await store.insert(self.run_id, writer.region, seq, value, written_at)
        except CanaryStoreError as exc:
            writer.errors += 1
            writer.last_error = str(exc)
            writer.attempts.append((written_at, time.time(), False))
            return None
        canary = Canary(writer.region, seq, value, written_at, time.time())
        writer.acked += 1
        writer.attempts.append((written_at, canary.acked_at, True))
        self.canaries.append(canary)
        for (source, _), link in self.links.items():
            if source == writer.region:
                link.pending[seq] = canary
        return canary

    # -- polling ------------------------------------------------------------------------
    async def _poll_loop(self, link: LinkState) -> None:
        while True:
            started = time.monotonic()
            await self.poll(link)
            await asyncio.sleep(max(0.0, self.poll_interval - (time.monotonic() - started)))

    async def poll(self, link: LinkState) -> None:
        start = time.time()
        prev_start = link.last_poll_start
        batch = sorted(link.pending)[:POLL_BATCH]
        try:
            found = await self.stores[link.target].present(self.run_id, link.source, batch)
        except CanaryStoreError as exc:
            link.poll_errors += 1
            link.last_error = str(exc)
            found = set()
        else:
            link.last_poll_start = start
        end = time.time()
        worst: tuple[float, float] | None = None
        for seq in found:
            canary = link.pending.pop(seq)
            # Not seen by the previous poll (or not yet acknowledged when it started).
            low = max(0.0, (prev_start or canary.acked_at) - canary.acked_at)
            high = end - canary.written_at
            estimate = ((low + high) / 2, (high - low) / 2)
            canary.seen[link.target] = estimate
            if worst is None or estimate[0] > worst[0]:
                worst = estimate
        oldest_age = max((end - c.acked_at for c in link.pending.values()), default=0.0)
        lag, bound = worst or (0.0, 0.0)
        if link.pending and oldest_age > lag:
            lag, bound = oldest_age, end - start
        if worst is not None or link.pending:
            link.series.append(LagPoint(end, lag, bound, len(link.pending)))

    # -- results ------------------------------------------------------------------------
    def lag_now(self, source: str, target: str) -> float | None:
        series = self.links[(source, target)].series
        return series[-1].lag if series else None

    def summary(self) -> list[LinkSummary]:
        out = []
        for link in self.links.values():
            samples = [
                c.seen[link.target]
                for c in self.canaries
                if c.origin == link.source and link.target in c.seen
            ]
            peak = max((p.lag for p in link.series), default=None)
            resolution = max((b for _, b in samples), default=None)
            out.append(
                LinkSummary(
                    link.source,
                    link.target,
                    len(samples),
                    len(link.pending),
                    peak,
                    resolution,
                    link.poll_errors,
                )
            )
        return out

    async def _read_views(
        self,
    ) -> tuple[dict[str, dict[tuple[str, int], str]], dict[str, str]]:
        """Every region's canaries of this run, and the regions that could not be read."""
        views: dict[str, dict[tuple[str, int], str]] = {}
        unreadable: dict[str, str] = {}
        for region, store in self.stores.items():
            try:
                views[region] = await store.read_all(self.run_id)
            except CanaryStoreError as exc:
                unreadable[region] = str(exc)
        return views, unreadable

    async def verify(self, convergence_timeout: float) -> Integrity:
        """After recovery: wait (bounded) for every acknowledged canary to reach every region,
        then read all of them back everywhere and count lost and divergent ones."""
        await self.stop_writing()
        started = time.monotonic()
        converged_after: float | None = None
        while True:
            for link in self.links.values():
                if link.pending:
                    await self.poll(link)
            if not any(link.pending for link in self.links.values()):
                converged_after = time.monotonic() - started
                break
            if time.monotonic() - started >= convergence_timeout:
                break
            await asyncio.sleep(self.poll_interval)
        # A canary whose write failed at the client may still have committed somewhere and
        # be on its way elsewhere: regions disagreeing is judged only once they stopped
        # converging, i.e. re-read (within the same timeout) until they agree.
        while True:
            views, unreadable = await self._read_views()
            divergent = _divergent(views)
            if not divergent or time.monotonic() - started >= convergence_timeout:
                break
            await asyncio.sleep(max(self.poll_interval, REREAD_INTERVAL))
        lost = [
            f"{c.origin}/{c.seq}"
            for c in self.canaries
            if any(view.get((c.origin, c.seq)) != c.value for view in views.values())
        ]
        return Integrity(
            len(self.canaries),
            len(lost),
            len(divergent),
            lost[:50],
            divergent[:50],
            unreadable,
            converged_after,
        )


def _divergent(views: Mapping[str, Mapping[tuple[str, int], str]]) -> list[str]:
    """Canaries (``origin/seq``) on which the regions' views disagree."""
    keys = set().union(*(v.keys() for v in views.values())) if views else set()
    return [f"{o}/{s}" for o, s in sorted(keys) if len({v.get((o, s)) for v in views.values()}) > 1]
