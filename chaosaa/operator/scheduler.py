"""Fires GameDay schedules: one task for every GameDay the operator watches.

kopf tells the scheduler about GameDays (``upsert``/``remove`` from the GameDay event
handler); one loop sleeps until the earliest slot of any of them, then evaluates the due
ones with :func:`chaosaa.operator.schedule.decide` and creates their runs. Creating is
idempotent (deterministic run names), so nothing here has to be remembered exactly:
after a restart, ``status.lastScheduleTime`` says where to continue, and a slot fired
twice by mistake finds its run already there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from chaosaa.errors import ChaosaaError
from chaosaa.kube import AlreadyExistsError
from chaosaa.operator import runs
from chaosaa.operator.clock import Clock
from chaosaa.operator.events import EventRecorder, ObjectRef
from chaosaa.operator.kube import Kube
from chaosaa.operator.metrics import Metrics
from chaosaa.operator.schedule import Decision, decide, next_slot, run_name
from chaosaa.operator.status import patch_gameday_status
from chaosaa.spec.model import GameDay
from chaosaa.spec.status import TERMINAL_PHASES

log = logging.getLogger(__name__)

#: under Forbid, how often (operator clock seconds) a waiting slot is looked at again, at
#: the latest; a finished run wakes the scheduler at once
FORBID_RECHECK = 10.0
#: the loop wakes at least this often (wall seconds), also to prove it is alive
MAX_SLEEP = 15.0
#: under Replace, how long the new run waits for the old ones to be gone (wall seconds)
REPLACE_WAIT = 150.0
#: API calls the scheduler makes at the same time (500 GameDays firing in the same minute)
CONCURRENCY = 32

#: (namespace, gameday) -> values of the runs index: (run name, phase or None)
RunIndex = Mapping[tuple[str, str], Collection[tuple[str, str | None]]]


@dataclass
class Entry:
    """What the scheduler knows about one GameDay."""

    namespace: str
    name: str
    body: dict[str, Any]
    cron: str | None
    zone: str
    suspend: bool
    policy: str
    deadline: float | None
    #: every slot up to here is dealt with (fired, or counted as missed)
    since: float
    #: the most recent slot a run exists for (status.lastScheduleTime)
    last_fired: float | None = None
    #: when to evaluate next (operator clock); None: never (no schedule, or suspended)
    due_at: float | None = None
    next_slot: float | None = None
    busy: bool = False
    #: changed while an evaluation was in flight: evaluate again right after it
    recheck: bool = False
    #: the last slot we told the user is waiting under Forbid (one event per slot)
    waiting_for: float | None = None
    #: status values last written, to write only changes
    written: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> tuple[str | None, str, bool, str, float | None]:
        return self.cron, self.zone, self.suspend, self.policy, self.deadline

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef.of(self.body)


class Scheduler:
    def __init__(
        self,
        clock: Clock,
        kube: Kube,
        fire_kube: Kube,
        events: EventRecorder,
        metrics: Metrics,
        run_index: RunIndex | None = None,
    ) -> None:
        self.clock = clock
        self.kube = kube
        #: creates the runs, through threads of its own (see ``state.FIRE_WORKERS``)
        self.fire_kube = fire_kube
        self.events = events
        self.metrics = metrics
        self.run_index: RunIndex = run_index if run_index is not None else {}
        self.entries: dict[tuple[str, str], Entry] = {}
        #: runs created here and not yet seen in the index: (ns, gameday) -> {name: wall}
        self._created: dict[tuple[str, str], dict[str, float]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self.heartbeat = time.monotonic()
        #: set while no run is being created. A burst (many GameDays on one schedule) creates
        #: its runs first; status writes, Events and the runs themselves wait for this
        self.created = asyncio.Event()
        self.created.set()
        self._creating = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="chaosaa-scheduler")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._inflight) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ------------------------------------------------------------------ what kopf tells us

    def upsert(self, body: Mapping[str, Any], gameday: GameDay) -> None:
        """A valid GameDay was created or changed (spec, status or annotations)."""
        namespace, name = runs.key(body)
        spec = gameday.spec
        now = self.clock.now()
        status = body.get("status") or {}
        last = runs.parse_time(status.get("lastScheduleTime"))
        settings = (
            spec.schedule,
            spec.time_zone,
            spec.suspend,
            spec.concurrency_policy,
            float(spec.starting_deadline_seconds)
            if spec.starting_deadline_seconds is not None
            else None,
        )
        entry = self.entries.get((namespace, name))
        if entry is None:
            created = runs.parse_time(body["metadata"].get("creationTimestamp")) or time.time()
            entry = Entry(
                namespace=namespace,
                name=name,
                body=dict(body),
                cron=None,
                zone="UTC",
                suspend=False,
                policy="Forbid",
                deadline=None,
                since=max(last or -math.inf, self.clock.from_wall(created)),
                last_fired=last,
                written={
                    "lastScheduleTime": status.get("lastScheduleTime"),
                    "nextScheduleTime": status.get("nextScheduleTime"),
                },
            )
            self.entries[(namespace, name)] = entry
            changed = True
        else:
            # the same object, updated in place: an evaluation may be in flight
            entry.body = dict(body)
            changed = settings != entry.settings
            if last is not None and (entry.last_fired is None or last > entry.last_fired):
                entry.since = max(entry.since, last)
                entry.last_fired = last
                changed = True
            if (entry.suspend and not spec.suspend) or (entry.cron, entry.zone) != settings[:2]:
                # slots that passed while suspended, or under the old schedule, are skipped:
                # resuming or rescheduling never fires a slot of the past
                entry.since = max(entry.since, now)
        entry.cron, entry.zone, entry.suspend, entry.policy, entry.deadline = settings
        if changed:
            entry.due_at = now  # evaluate at once: a slot may be due (e.g. after a restart)
            entry.recheck = entry.busy
            self._wake.set()

    def remove(self, namespace: str, name: str) -> None:
        """The GameDay is gone or invalid: no more scheduled runs."""
        self.entries.pop((namespace, name), None)
        self._created.pop((namespace, name), None)

    def run_finished(self, namespace: str, gameday: str) -> None:
        """A run ended: a slot waiting under Forbid may go now."""
        entry = self.entries.get((namespace, gameday))
        if entry is not None and entry.waiting_for is not None:
            entry.due_at = self.clock.now()
            self._wake.set()

    def note_created(self, namespace: str, gameday: str, run: str) -> None:
        self._created.setdefault((namespace, gameday), {})[run] = time.time()

    def active_runs(self, namespace: str, gameday: str) -> list[str]:
        """Runs of a GameDay that have not finished (from kopf's index of GameDayRuns, plus
        the ones created here that the index has not seen yet)."""
        indexed = list(self.run_index.get((namespace, gameday), ()))
        seen = {name for name, _ in indexed}
        active = {name for name, phase in indexed if phase not in TERMINAL_PHASES}
        recent = self._created.get((namespace, gameday), {})
        for name, at in list(recent.items()):
            if name in seen or time.time() - at > 300:
                del recent[name]
            else:
                active.add(name)
        return sorted(active)

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        while True:
            self.heartbeat = time.monotonic()
            now = self.clock.now()
            for entry in self.entries.values():
                if entry.due_at is not None and entry.due_at <= now and not entry.busy:
                    entry.busy = True
                    task = asyncio.create_task(self._evaluate(entry), name=f"fire:{entry.name}")
                    self._inflight.add(task)
                    self._creating += 1
                    self.created.clear()
                    task.add_done_callback(self._inflight.discard)
            upcoming = [
                e.due_at for e in self.entries.values() if e.due_at is not None and not e.busy
            ]
            delay = MAX_SLEEP
            if upcoming:
                delay = min(delay, max(0.0, self.clock.wall_seconds(min(upcoming) - now)))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _evaluate(self, entry: Entry) -> None:
        try:
            try:
                async with self._limit:
                    next_time = await self._evaluate_entry(entry)
            finally:
                self._creating -= 1
                if self._creating == 0:
                    self.created.set()
            if next_time is not False:
                await self.created.wait()
                await self._write_status(entry, next_time)
        except ChaosaaError as exc:
            log.warning("GameDay %s/%s: scheduling failed: %s", entry.namespace, entry.name, exc)
            entry.due_at = self.clock.now() + self.clock.scale * 5.0  # 5 wall seconds
        except Exception:
            log.exception("GameDay %s/%s: scheduling failed", entry.namespace, entry.name)
            entry.due_at = self.clock.now() + self.clock.scale * 5.0
        finally:
            entry.busy = False
            if entry.recheck:
                entry.recheck = False
                entry.due_at = self.clock.now()
            self._wake.set()

    async def _evaluate_entry(self, entry: Entry) -> float | Literal[False] | None:
        """Fire what is due; return the next slot to record in status (None: no schedule),
        or False when there is nothing to record."""
        if self.entries.get((entry.namespace, entry.name)) is not entry:
            return False  # removed
        if entry.cron is None or entry.suspend:
            entry.due_at = None
            return None
        now = self.clock.now()
        decision = decide(
            entry.cron, entry.zone, since=entry.since, now=now, deadline=entry.deadline
        )
        entry.next_slot = decision.next
        if decision.missed:
            self._missed(entry, decision)
        if decision.too_late is not None:
            entry.since = max(entry.since, decision.too_late)
        if decision.due is not None and not await self._fire(entry, decision.due, now):
            return False  # waiting under Forbid; due_at was set
        entry.due_at = decision.next
        return decision.next

    def _missed(self, entry: Entry, decision: Decision) -> None:
        self.metrics.missed_slots.labels(entry.namespace, entry.name).inc(decision.missed)
        if decision.too_late is not None:
            message = (
                f"{decision.missed} slot(s) missed; the latest, {runs.rfc3339(decision.too_late)}, "
                f"is more than startingDeadlineSeconds ({entry.deadline:g}s) old and will not run"
            )
        else:
            message = f"{decision.missed} older slot(s) missed; only the most recent one runs"
        self.events.warning(entry.ref, "MissedSchedule", message)

    async def _fire(self, entry: Entry, slot: float, now: float) -> bool:
        """Create the run for ``slot``; False when it has to wait (Forbid)."""
        active = self.active_runs(entry.namespace, entry.name)
        if active and entry.policy == "Forbid":
            if entry.waiting_for != slot:
                entry.waiting_for = slot
                self.events.normal(
                    entry.ref,
                    "Waiting",
                    f"slot {runs.rfc3339(slot)} waits for {', '.join(active)} to finish "
                    "(concurrencyPolicy Forbid)",
                )
            recheck = now + FORBID_RECHECK * self.clock.scale
            entry.due_at = min(recheck, next_slot(entry.cron or "", entry.zone, now))
            return False
        entry.waiting_for = None
        if active and entry.policy == "Replace":
            for name in active:
                await self.kube.delete(runs.GAMEDAYRUNS, entry.namespace, name)
            self.events.normal(
                entry.ref, "Replaced", f"deleted {', '.join(active)} (concurrencyPolicy Replace)"
            )
            # the new run starts once the old ones reverted their faults and are gone:
            # their target lease would refuse it before
            await self._gone(entry, active)
        name = run_name(entry.name, slot)
        manifest = runs.run_manifest(entry.body, name=name, trigger="schedule", scheduled=slot)
        try:
            await self.fire_kube.create(runs.GAMEDAYRUNS, entry.namespace, manifest)
        except AlreadyExistsError:
            log.info(
                "run %s/%s for %s exists already: not firing again",
                entry.namespace,
                name,
                runs.rfc3339(slot),
            )
        else:
            delay = self.clock.wall_seconds(self.clock.now() - slot)
            self.metrics.schedule_delay.observe(max(0.0, delay))
            self.note_created(entry.namespace, entry.name, name)
            self.events.normal(
                entry.ref, "Scheduled", f"created run {name} for slot {runs.rfc3339(slot)}"
            )
        entry.since = max(entry.since, slot)
        entry.last_fired = max(entry.last_fired or slot, slot)
        return True

    async def _gone(self, entry: Entry, names: list[str]) -> None:
        deadline = time.monotonic() + REPLACE_WAIT
        while time.monotonic() < deadline:
            indexed = {n for n, _ in self.run_index.get((entry.namespace, entry.name), ())}
            if not indexed & set(names):
                return
            await asyncio.sleep(0.2)
        log.warning(
            "GameDay %s/%s: %s still there after %.0fs; starting the new run anyway",
            entry.namespace,
            entry.name,
            ", ".join(names),
            REPLACE_WAIT,
        )

    async def _write_status(self, entry: Entry, next_time: float | None) -> None:
        wanted: dict[str, Any] = {
            "nextScheduleTime": runs.rfc3339(next_time) if next_time is not None else None,
        }
        if entry.last_fired is not None:
            wanted["lastScheduleTime"] = runs.rfc3339(entry.last_fired)
        changes = {k: v for k, v in wanted.items() if entry.written.get(k) != v}
        if not changes:
            return
        changes["active"] = self.active_runs(entry.namespace, entry.name)
        if await patch_gameday_status(self.kube, entry.namespace, entry.name, changes):
            entry.written.update(changes)
