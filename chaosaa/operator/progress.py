"""A run's progress as the operator shows it: Kubernetes Events and ``status.currentPhase``.

The engine's :class:`~chaosaa.engine.progress.Progress` protocol, for one GameDayRun.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Gauge

from chaosaa.operator.events import EventRecorder, ObjectRef

#: status.currentPhase is written at most this often (seconds)
PHASE_WRITES = 1.0


def _camel(phase: str) -> str:
    return "".join(part.capitalize() for part in phase.replace("_", "-").split("-"))


class RunProgress:
    """The engine's Progress protocol, as Events on the run and a status field."""

    def __init__(
        self,
        events: EventRecorder,
        ref: ObjectRef,
        faults_active: Gauge,
        write_phase: Callable[[str | None], Awaitable[object]],
    ) -> None:
        self.events = events
        self.ref = ref
        self.faults_active = faults_active  # the gauge of this run's GameDay
        self.write_phase = write_phase  # status.currentPhase
        self.active_faults: set[str] = set()
        self.current: str | None = None
        self._writer: asyncio.Task[None] | None = None

    def phase(self, name: str, detail: str = "") -> None:
        self.events.normal(self.ref, f"Phase{_camel(name)}", detail or name)
        self.current = name
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_phase())

    async def _write_phase(self) -> None:
        """``status.currentPhase``, at most once per PHASE_WRITES seconds: a run that
        fails in preflight within milliseconds costs no status write for it."""
        written = None
        while True:
            await asyncio.sleep(PHASE_WRITES)
            if self.current != written:
                written = self.current
                await self.write_phase(written)

    def event(self, at: float, event: str, detail: dict[str, Any]) -> None:
        ev, ref = self.events, self.ref
        fault = str(detail.get("fault", ""))
        if event == "fault.requested":
            self._fault_active(fault, True)
            ev.normal(ref, "FaultRequested", f"injecting {fault} ({detail.get('type')})")
        elif event == "fault.effective":
            ms = float(detail.get("timeToEffectSeconds", 0)) * 1000
            ev.normal(ref, "FaultEffective", f"fault {fault} in place after {ms:.0f} ms")
        elif event == "fault.reverted":
            self._fault_active(fault, False)
            ms = float(detail.get("timeToRevertSeconds", 0)) * 1000
            ev.normal(ref, "FaultReverted", f"fault {fault} reverted in {ms:.0f} ms")
        elif event == "fault.revert_failed":
            ev.warning(ref, "RevertFailed", f"fault {fault}: {detail.get('error')}")
        elif event in ("steady.before", "steady.after") and not detail.get("passed"):
            ev.warning(
                ref,
                "SteadyStateNotMet",
                f"{event.split('.')[1]}: {detail.get('check')} = {detail.get('value')}",
            )
        elif event == "slo":
            kind = "Normal" if detail.get("verdict") == "passed" else "Warning"
            ev.post(
                ref,
                kind,
                "SLOEvaluated",
                f"{detail.get('slo')}: measured {detail.get('measured')} "
                f"-> {detail.get('verdict')}",
            )
        elif event == "run.signal":
            ev.warning(ref, "Stopping", f"{detail.get('reason')}: {detail.get('action')}")

    def traffic(self, sent: int, ok: int, errors: int, by_region: dict[str, int]) -> None:
        pass  # numbers go into the final status; per-second Events would be noise

    def _fault_active(self, fault: str, active: bool) -> None:
        if active == (fault in self.active_faults):
            return
        if active:
            self.active_faults.add(fault)
        else:
            self.active_faults.discard(fault)
        self.faults_active.inc() if active else self.faults_active.dec()

    async def settle(self) -> None:
        """Wait for pending status patches; the faults of a finished run are not active."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        for fault in list(self.active_faults):
            self._fault_active(fault, False)
