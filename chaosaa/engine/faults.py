"""The life of one fault: wait for its offset, inject, verify, renew, revert, verify.

Revert is guaranteed by structure: once ``inject`` has been called, a ``finally`` block
reverts the fault, shielded from cancellation, whatever ended the run (the fault's own
duration, an abort rule, an exception, SIGINT or SIGTERM). If even that process dies
(SIGKILL), the TTL that the renew loop keeps pushing forward lets the target revert the
fault by itself: the dead-man switch of DESIGN.md section 5.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chaosaa.errors import ChaosaaError, FaultError
from chaosaa.failpoints import failpoint
from chaosaa.spec.faults import Fault
from chaosaa.targets.base import Applied, Target

log = logging.getLogger(__name__)

#: how long a fault may take to show its effect or to disappear
VERIFY_TIMEOUT = 15.0
#: renewals happen at this fraction of the TTL (TTL 10 s -> every 2 s)
RENEW_FRACTION = 0.2
#: pause between two revert attempts: first, and at most (it doubles)
REVERT_PAUSE = (0.2, 2.0)

EventSink = Callable[[str, dict[str, Any]], None]


@dataclass
class FaultRecord:
    """What happened to one fault, in unix seconds; None = did not happen. The one
    timeline of a fault: its events, its SLOs and its report entry are read from here."""

    fault: Fault
    requested_at: float | None = None
    effective_at: float | None = None
    revert_requested_at: float | None = None
    reverted_at: float | None = None
    error: str | None = None
    applied: Applied | None = None

    @property
    def time_to_effect(self) -> float | None:
        if self.requested_at is None or self.effective_at is None:
            return None
        return self.effective_at - self.requested_at

    @property
    def time_to_revert(self) -> float | None:
        if self.revert_requested_at is None or self.reverted_at is None:
            return None
        return self.reverted_at - self.revert_requested_at


def _rounded(seconds: float | None) -> float | None:
    """A duration as events carry it: to the microsecond."""
    return None if seconds is None else round(seconds, 6)


async def _wait_until(
    check: Callable[[], Any], applied: Applied, what: str, limit: float, interval: float
) -> float:
    """Poll an async predicate until true; return the unix time it first held.

    On timeout the error names what the target last found not done (``applied.pending``).
    """
    deadline = time.monotonic() + limit
    while True:
        if await check():
            return time.time()
        if time.monotonic() >= deadline:
            left = f"; still waiting for: {'; '.join(applied.pending)}" if applied.pending else ""
            raise FaultError(f"{what}: not verified within {limit:g}s{left}")
        await asyncio.sleep(interval)


class FaultRunner:
    """Drives one fault against a target; ``run()`` is meant to be a task."""

    def __init__(self, target: Target, fault: Fault, emit: EventSink) -> None:
        self.target = target
        self.fault = fault
        self.record = FaultRecord(fault)
        self._emit = emit
        #: when the target's dead-man switch reverts the fault by itself (monotonic): the
        #: TTL counted from the last answer that set it; None before inject answered
        self._expires: float | None = None
        #: a revert was retried until that TTL had lapsed, and failed
        self._gave_up = False

    async def run(self, injection_start_monotonic: float) -> FaultRecord:
        f = self.fault
        delay = injection_start_monotonic + f.after - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            await self._inject()
            await self._hold(f.duration - (time.time() - (self.record.effective_at or time.time())))
        except Exception as exc:
            self.record.error = str(exc)
            raise
        finally:
            if self.record.requested_at is not None:
                await asyncio.shield(self._revert())
        return self.record

    async def _inject(self) -> None:
        f, rec = self.fault, self.record
        await failpoint("inject.before")
        # the handle first: once requested, the fault is reverted and verified through
        # it, whatever becomes of the inject call (an error, a SIGTERM midway)
        applied = rec.applied = self.target.new_applied(f)
        rec.requested_at = time.time()
        self._emit("fault.requested", {"fault": f.name, "type": f.type})
        try:
            await self.target.inject(f, f.ttl, applied)
        except FaultError:
            raise
        except Exception as exc:  # any target failure is an environment error
            raise FaultError(f"fault {f.name!r}: inject failed: {exc}") from exc
        finally:
            # the latest the target may have set the TTL from (also for a failed call)
            self._expires = time.monotonic() + f.ttl
        await failpoint("inject.after")
        rec.effective_at = await _wait_until(
            lambda: self.target.verify_effect(applied),
            applied,
            f"fault {f.name!r} effect",
            VERIFY_TIMEOUT,
            self.target.verify_interval,
        )
        self._emit(
            "fault.effective",
            {"fault": f.name, "timeToEffectSeconds": _rounded(rec.time_to_effect)},
        )

    async def _hold(self, seconds: float) -> None:
        """Keep the fault in place for ``seconds``, renewing its TTL."""
        applied = self.record.applied
        assert applied is not None
        end = time.monotonic() + max(0.0, seconds)
        interval = max(0.05, self.fault.ttl * RENEW_FRACTION)
        while (remaining := end - time.monotonic()) > 0:
            await asyncio.sleep(min(interval, remaining))
            if end - time.monotonic() > 0:
                await self._renew(applied)

    async def _renew(self, applied: Applied) -> None:
        ttl = self.fault.ttl
        try:
            await failpoint("renew.before")
            await self.target.renew(applied, ttl)
            self._expires = time.monotonic() + ttl
            await failpoint("renew.after")
        except Exception as exc:
            # A missed renewal is not fatal while the TTL still covers us; once it does
            # not, the target has reverted the fault early: the run measured something
            # else than the GameDay asked for.
            if self._expires is not None and time.monotonic() >= self._expires:
                raise FaultError(
                    f"fault {self.fault.name!r} lapsed before its duration: no renewal "
                    f"succeeded within its TTL ({ttl:g}s); last error: {exc}"
                ) from exc
            log.warning("renewing fault %s failed: %s", self.fault.name, exc)

    async def _revert(self) -> None:
        f, rec = self.fault, self.record
        rec.revert_requested_at = time.time()
        self._emit("fault.revert", {"fault": f.name})
        if rec.applied is None:  # not requested: nothing to revert
            return
        await failpoint("revert.before")
        try:
            rec.reverted_at = await self._revert_until_ttl(rec.applied)
        except Exception as exc:
            rec.error = "; ".join(filter(None, [rec.error, f"revert failed: {exc}"]))
            self._emit("fault.revert_failed", {"fault": f.name, "error": str(exc)})
            raise FaultError(f"fault {f.name!r}: revert failed: {exc}") from exc
        self._emit(
            "fault.reverted", {"fault": f.name, "timeToRevertSeconds": _rounded(rec.time_to_revert)}
        )

    async def _revert_until_ttl(self, applied: Applied) -> float:
        """Revert and verify it; retry on target errors until the fault's TTL has lapsed
        (then the target's dead-man switch has taken over), and at least for
        VERIFY_TIMEOUT. Return when it was verified reverted (unix seconds)."""
        now = time.monotonic()
        deadline = max(now + VERIFY_TIMEOUT, self._expires or now)
        pause = REVERT_PAUSE[0]
        while True:
            try:
                return await asyncio.wait_for(
                    self._revert_once(applied), max(0.5, deadline - time.monotonic())
                )
            except (ChaosaaError, TimeoutError) as exc:
                if time.monotonic() + pause >= deadline:
                    self._gave_up = True
                    why = str(exc) or f"no answer within {deadline - now:.1f}s"
                    raise FaultError(f"{why}; retried for {time.monotonic() - now:.1f}s") from exc
                log.warning("reverting fault %s failed, retrying: %s", self.fault.name, exc)
            await asyncio.sleep(pause)
            pause = min(2 * pause, REVERT_PAUSE[1])

    async def _revert_once(self, applied: Applied) -> float:
        await self.target.revert(applied)
        await failpoint("revert.after")
        return await _wait_until(
            lambda: self.target.verify_reverted(applied),
            applied,
            f"fault {self.fault.name!r} revert",
            VERIFY_TIMEOUT,
            self.target.verify_interval,
        )

    async def ensure_reverted(self) -> None:
        """At the end of a run: revert a fault whose own revert never completed (its task
        was stopped by an error), unless it was already retried until its TTL lapsed."""
        rec = self.record
        if rec.applied is not None and rec.reverted_at is None and not self._gave_up:
            await self._revert()

    def may_remain(self) -> str | None:
        """What may still be in place on the target, or None: a fault that was applied and
        never verified reverted."""
        rec, f = self.record, self.fault
        if rec.applied is None or rec.reverted_at is not None:
            return None
        return f"{f.name} ({f.type} on {f.scope()}: {f.describe()}; target id {rec.applied.ref})"
