"""Pure scheduling logic: which cron slot is due, what comes next, and what runs are called.

Semantics follow the Kubernetes CronJob controller, with one difference that makes firing
exact: the run for a slot has a name derived from the GameDay and the slot
(:func:`run_name`), so creating it is idempotent. Whatever the operator remembers or
forgets (a lost status write, a restart between "create" and "record"), asking again for
the same slot finds the run already there and never starts a second one.

- Only slots after ``since`` count: the last slot fired (``status.lastScheduleTime``) or,
  for a new GameDay, its creation.
- Of the slots missed while nothing ran (operator down, a run still going under
  ``Forbid``), only the most recent one is due, and only while it is at most
  ``startingDeadlineSeconds`` old; older ones are counted as missed, never run late.

All instants are unix seconds of the operator's clock (see ``clock.py``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter

#: the most missed slots counted (a GameDay suspended for years has millions)
MISSED_LIMIT = 100


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _at(instant: float, zone: str) -> datetime:
    return datetime.fromtimestamp(instant, _zone(zone))


def next_slot(cron: str, zone: str, after: float) -> float:
    """The first slot strictly after ``after``."""
    base = _at(math.floor(after), zone)
    nxt: datetime = croniter(cron, base).get_next(datetime)
    return nxt.timestamp()


def latest_slot(cron: str, zone: str, at: float) -> float:
    """The last slot at or before ``at``."""
    # croniter's get_prev is exclusive of its start: start one second past `at`
    base = _at(math.floor(at) + 1, zone)
    prev: datetime = croniter(cron, base).get_prev(datetime)
    return prev.timestamp()


def count_slots(cron: str, zone: str, after: float, until: float, limit: int = MISSED_LIMIT) -> int:
    """How many slots lie in ``(after, until]``, counting at most ``limit``."""
    n = 0
    it = croniter(cron, _at(math.floor(after), zone))
    while n < limit:
        slot: datetime = it.get_next(datetime)
        if slot.timestamp() > until:
            break
        n += 1
    return n


@dataclass(frozen=True)
class Decision:
    """What to do for one GameDay at one instant."""

    #: the slot to create a run for now, if any
    due: float | None
    #: the next slot after now (when to look again)
    next: float
    #: slots that will never run: superseded by a later one, or older than the deadline
    missed: int = 0
    #: the most recent slot that is too old to start (startingDeadlineSeconds passed)
    too_late: float | None = None


def decide(cron: str, zone: str, *, since: float, now: float, deadline: float | None) -> Decision:
    """The slot due at ``now`` given that every slot up to ``since`` is dealt with."""
    nxt = next_slot(cron, zone, now)
    latest = latest_slot(cron, zone, now)
    if latest <= since:
        return Decision(due=None, next=nxt)
    superseded = count_slots(cron, zone, since, latest) - 1
    if deadline is not None and now - latest > deadline:
        return Decision(due=None, next=nxt, missed=superseded + 1, too_late=latest)
    return Decision(due=latest, next=nxt, missed=superseded)


def run_name(gameday: str, slot: float) -> str:
    """The run for a scheduled slot: ``<gameday>-<unix minute>`` (cron has minute slots)."""
    return f"{gameday}-{int(slot // 60)}"


def manual_run_name(gameday: str, token: str) -> str:
    """A manual run: ``<gameday>-manual-<10 hex of the token>`` (the trigger's value)."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:10]
    return f"{gameday}-manual-{digest}"
