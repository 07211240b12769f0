"""Kubernetes Events for GameDays and GameDayRuns, posted in the background.

Posting never blocks the caller (the engine calls ``Progress`` synchronously from its
loop): events go to a bounded queue that one task drains. A full queue drops the event
with a log line rather than slowing a run down.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chaosaa.errors import ChaosaaError
from chaosaa.operator.kube import Kube

log = logging.getLogger(__name__)

COMPONENT = "chaosaa-operator"
QUEUE_SIZE = 2000
#: the longest posting pauses for a burst of runs being created
GATE_WAIT = 10.0
#: seconds the queue may take to drain at shutdown
FLUSH_TIMEOUT = 5.0
#: Event messages are limited to 1 KiB by convention (kubectl shows them in one line)
MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class ObjectRef:
    """What an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str | None = None

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj["metadata"]
        return cls(
            api_version=str(obj.get("apiVersion", "")),
            kind=str(obj.get("kind", "")),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta["name"]),
            uid=meta.get("uid"),
        )


class EventRecorder:
    def __init__(self, kube: Kube, instance: str) -> None:
        self.kube = kube
        self.instance = instance
        self._queue: asyncio.Queue[tuple[ObjectRef, str, str, str]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self.posted = 0
        self.dropped = 0
        #: posting waits while this is clear (the scheduler creating a burst of runs)
        self.gate: asyncio.Event | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain(), name="chaosaa-events")

    async def stop(self) -> None:
        """Post what is queued (for at most FLUSH_TIMEOUT seconds), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), FLUSH_TIMEOUT)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def normal(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.post(ref, "Normal", reason, message)

    def warning(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.post(ref, "Warning", reason, message)

    def post(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        log.info("%s %s/%s: %s: %s", ref.kind, ref.namespace, ref.name, reason, message)
        try:
            self._queue.put_nowait((ref, type_, reason, message[:MESSAGE_LIMIT]))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("event queue full; dropped %s %s for %s", type_, reason, ref.name)

    async def _drain(self) -> None:
        while True:
            ref, type_, reason, message = await self._queue.get()
            if self.gate is not None and not self.gate.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.gate.wait(), GATE_WAIT)
            try:
                await self.kube.create_event(
                    ref.namespace, self._event(ref, type_, reason, message)
                )
                self.posted += 1
            except ChaosaaError as exc:
                log.warning("could not post event %s for %s: %s", reason, ref.name, exc)
            finally:
                self._queue.task_done()

    def _event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        involved = {
            "apiVersion": ref.api_version,
            "kind": ref.kind,
            "namespace": ref.namespace,
            "name": ref.name,
            **({"uid": ref.uid} if ref.uid else {}),
        }
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
            "involvedObject": involved,
            "type": type_,
            "reason": reason,
            "message": message,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance[:128],
        }
