"""Failpoints: named places in a run where a test can make chaosaa itself fail.

As etcd does with gofail: every phase boundary of a run and every step of a fault's
inject, renew and revert is a named point (:data:`POINTS`). ``CHAOSAA_FAILPOINTS`` arms
some of them for one ``chaosaa run``::

    CHAOSAA_FAILPOINTS='revert.before=panic;inject.after=sleep(5s)'

Actions: ``panic`` (raise :class:`FailpointPanic`, an unexpected exception: a bug),
``sleep(D)`` (wait ``D``, a duration such as ``250ms``; other tasks go on), ``kill``
(SIGKILL this process), ``term`` (SIGTERM this process), ``off``. ``N*ACTION`` acts on the
first ``N`` passes only. The variable is read once, by ``chaosaa run``; a malformed value
or an unknown point is invalid input (exit 2). Unset, a point costs one dict lookup in a
coroutine call (~0.1 µs, ``bench/failpoints.py``): nothing next to the HTTP call beside it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from chaosaa.durations import parse_duration
from chaosaa.errors import InvalidInputError

log = logging.getLogger(__name__)

ENV = "CHAOSAA_FAILPOINTS"

#: every point, in the order a run passes them, and what has happened when it is reached
POINTS: Mapping[str, str] = {
    "preflight.after": "target reached, Prometheus and PromQL checked, lease taken; "
    "nothing injected",
    "traffic.after": "traffic started, warm-up not begun",
    "steady.after": "steady state met; no fault injected yet",
    "inject.before": "a fault is about to be requested from the target",
    "inject.after": "the target accepted a fault; its effect not verified yet",
    "renew.before": "a fault's TTL is about to be renewed",
    "renew.after": "a fault's TTL was renewed",
    "revert.before": "a fault is about to be reverted",
    "revert.after": "the target accepted a revert; not verified yet",
    "observe.after": "every fault reverted and verified",
    "recover.after": "recovery window over, steady state checked again",
    "verify.after": "SLOs and data integrity evaluated; target not yet released",
    "report.before": "run over, target released; no report written yet",
    "report.after": "reports written; summary not printed yet",
}

Kind = Literal["panic", "sleep", "kill", "term", "off"]
_ENTRY = re.compile(
    r"^(?P<name>[a-z.]+)=(?:(?P<count>\d+)\*)?(?P<kind>panic|sleep|kill|term|off)"
    r"(?:\((?P<arg>[^()]*)\))?$"
)


class FailpointPanic(RuntimeError):
    """Raised by a ``panic`` failpoint: an unexpected exception, as a bug would raise."""


@dataclass
class Action:
    kind: Kind
    seconds: float = 0.0
    #: passes left that act (``N*``); None: every pass
    remaining: int | None = None

    def take(self) -> bool:
        """Whether this pass acts (and count it)."""
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


_armed: dict[str, Action] = {}


def parse(text: str) -> dict[str, Action]:
    """``name=action;...`` -> armed points; raise InvalidInputError naming the bad entry."""
    armed: dict[str, Action] = {}
    for raw in text.split(";"):
        entry = "".join(raw.split())
        if not entry:
            continue
        m = _ENTRY.match(entry)
        if m is None:
            raise InvalidInputError(
                f"{ENV}: {entry!r}: expected NAME=ACTION with ACTION one of panic, "
                "sleep(DURATION), kill, term, off (optionally N*ACTION)"
            )
        name, kind, arg = m["name"], m["kind"], m["arg"]
        if name not in POINTS:
            raise InvalidInputError(
                f"{ENV}: unknown failpoint {name!r}; known: {', '.join(POINTS)}"
            )
        seconds = 0.0
        if kind == "sleep":
            try:
                seconds = parse_duration(arg or "")
            except ValueError as exc:
                raise InvalidInputError(f"{ENV}: {entry!r}: {exc}") from None
        elif arg is not None:
            raise InvalidInputError(f"{ENV}: {entry!r}: {kind} takes no argument")
        count = int(m["count"]) if m["count"] else None
        armed[name] = Action(kind, seconds, count)  # type: ignore[arg-type]
    return armed


def configure(text: str | None) -> None:
    """Arm the points ``text`` names (None or empty: disarm every point)."""
    armed = parse(text or "")
    _armed.clear()
    _armed.update({name: a for name, a in armed.items() if a.kind != "off"})


def configure_from_env(environ: Mapping[str, str] = os.environ) -> None:
    configure(environ.get(ENV))


def armed() -> dict[str, Action]:
    """The armed points (a copy)."""
    return dict(_armed)


async def failpoint(name: str) -> None:
    """A failpoint in async code: ``sleep`` lets other tasks run meanwhile."""
    action = _armed.get(name)
    if action is not None and action.take():
        if action.kind == "sleep":
            _announce(name, action)
            await asyncio.sleep(action.seconds)
        else:
            _act(name, action)


def failpoint_sync(name: str) -> None:
    """A failpoint in synchronous code: ``sleep`` blocks the thread."""
    action = _armed.get(name)
    if action is not None and action.take():
        if action.kind == "sleep":
            _announce(name, action)
            time.sleep(action.seconds)
        else:
            _act(name, action)


def _announce(name: str, action: Action) -> None:
    what = f"sleep({action.seconds:g}s)" if action.kind == "sleep" else action.kind
    log.warning("failpoint %s: %s", name, what)


def _act(name: str, action: Action) -> None:
    _announce(name, action)
    if action.kind == "panic":
        raise FailpointPanic(f"failpoint {name}: panic")
    sys.stderr.flush()
    # kill: nothing of this process runs after it; term: the process's own handlers
    # decide what SIGTERM means at this point (a run reverts its faults and reports)
    os.kill(os.getpid(), signal.SIGKILL if action.kind == "kill" else signal.SIGTERM)
