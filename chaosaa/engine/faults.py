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

from chaosaa.errors import FaultError
from chaosaa.spec.faults import Fault
from chaosaa.targets.base import Applied, Target

log = logging.getLogger(__name__)

#: how long a fault may take to show its effect or to disappear
VERIFY_TIMEOUT = 15.0
#: renewals happen at this fraction of the TTL (TTL 10 s -> every 2 s)
RENEW_FRACTION = 0.2

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

    async def run(self, injection_start_monotonic: float) -> FaultRecord:
        f = self.fault
        delay = injection_start_monotonic + f.after - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            await self._inject()
            await self._hold(f.duration - (time.time() - (self.record.effective_at or time.time())))
        finally:
            if self.record.requested_at is not None:
                await asyncio.shield(self._revert())
        return self.record

    async def _inject(self) -> None:
        f, rec = self.fault, self.record
        rec.requested_at = time.time()
        self._emit("fault.requested", {"fault": f.name, "type": f.type})
        try:
            rec.applied = await self.target.inject(f, f.ttl)
        except FaultError:
            raise
        except Exception as exc:  # any target failure is an environment error
            raise FaultError(f"fault {f.name!r}: inject failed: {exc}") from exc
        applied = rec.applied
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
                try:
                    await self.target.renew(applied, self.fault.ttl)
                except Exception as exc:
                    # A missed renewal is not fatal while the TTL still covers us;
                    # the next attempt (or the TTL) settles it.
                    log.warning("renewing fault %s failed: %s", self.fault.name, exc)

    async def _revert(self) -> None:
        f, rec = self.fault, self.record
        rec.revert_requested_at = time.time()
        self._emit("fault.revert", {"fault": f.name})
        if rec.applied is None:
            # inject raised before returning a handle: roll back whatever may be there
            # by asking the target for a clean slate of this fault is not possible, so
            # rely on the TTL; record it so the report says so.
            rec.error = rec.error or "inject did not return; the fault's TTL reverts it"
            return
        applied = rec.applied
        try:
            await self.target.revert(applied)
            rec.reverted_at = await _wait_until(
                lambda: self.target.verify_reverted(applied),
                applied,
                f"fault {f.name!r} revert",
                VERIFY_TIMEOUT,
                self.target.verify_interval,
            )
        except Exception as exc:
            rec.error = f"revert failed: {exc}"
            self._emit("fault.revert_failed", {"fault": f.name, "error": str(exc)})
            raise FaultError(f"fault {f.name!r}: revert failed: {exc}") from exc
        self._emit(
            "fault.reverted", {"fault": f.name, "timeToRevertSeconds": _rounded(rec.time_to_revert)}
        )
