"""The node agent: turns the NetworkFaults of its node into nft/tc rules, and back.

Life of a NetworkFault on the agent's node:

1. seen (watch): its finalizer is added, the rules from :mod:`chaosaa.rules` are applied,
   ``status.phase`` becomes ``Applied`` (or ``Failed`` with the reason, rules undone);
2. renewed: each new ``spec.expiresAt`` pushes the local deadline to *now + ttlSeconds*
   (measured on the agent's monotonic clock, so clock skew cannot shorten or stretch it);
3. reverted when the object is deleted (then the finalizer goes), when the deadline passes
   without a renewal (the dead-man switch: ``Reverted``, reason ``Expired``; it stays
   reverted), or when the agent stops.

At start the agent removes every chaosaa rule on the node (a crashed predecessor's), then
re-applies the faults that are still live. On SIGTERM it reverts everything it applied.
Rule execution never waits for the API server (:mod:`chaosaa.agent.api`): status updates
are written in the background, and expiry is checked on a timer of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chaosaa.agent.api import NodeApi
from chaosaa.agent.node import NodeShell, devices, route_device
from chaosaa.errors import ChaosaaError, FaultError, InvalidInputError
from chaosaa.kube import Client
from chaosaa.kube.janitor import sweep
from chaosaa.rules import resource as nf
from chaosaa.rules.execute import Transport, execute, execute_all
from chaosaa.rules.generate import MAX_SLOT, NodeRules, rules_for, teardown
from chaosaa.rules.model import NodeFault

if TYPE_CHECKING:
    from chaosaa.kube.client import ApiClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentConfig:
    """What one agent process does (from flags and CHAOSAA_* variables)."""

    node: str | None
    netns: str | None = None
    device: str | None = None
    namespace: str = nf.AGENT_NAMESPACE
    #: seconds between heartbeat Lease renewals; the Lease lives 3x as long
    heartbeat: float = 5.0
    #: how often deadlines are checked
    tick: float = 0.1
    #: also restore expired kubernetes-side artefacts (scale-downs, cordons, policies)
    janitor: bool = False
    janitor_interval: float = 2.0
    command_timeout: float = 10.0


@dataclass
class Tracked:
    """One NetworkFault of this node, as the agent knows it."""

    name: str
    uid: str
    fault: NodeFault | None
    spec_hash: str
    expires_at: str
    deadline: float
    generation: int = 0
    rules: NodeRules | None = None
    #: terminal without a new spec: expired (dead-man switch) or failed
    settled: bool = False
    status: dict[str, Any] = field(default_factory=dict)


def _spec_hash(spec: dict[str, Any]) -> str:
    stable = {k: v for k, v in spec.items() if k not in ("expiresAt", "ttlSeconds")}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:16]


def _stamp(ts: float | None = None) -> str:
    return nf.format_time(time.time() if ts is None else ts)


class Agent:
    """``await Agent(config, api_client).run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        config: AgentConfig,
        api: ApiClient,
        *,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.kube = Client(api)
        self.api = NodeApi(self.kube, config.node or "", config.namespace)
        self.shell = NodeShell(config.netns, config.command_timeout)
        self.run_cmd: Transport = transport or self.shell
        self.clock = clock
        self.tracked: dict[str, Tracked] = {}
        self.allow: tuple[str, ...] = ()
        self._lock = asyncio.Lock()
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.ready = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        background: list[asyncio.Task[Any]] = []
        try:
            if self.config.node:
                await self.recover()
                self.allow = await self.api.api_server_addresses()
                self._thread = threading.Thread(
                    target=self.api.watch,
                    args=(self._post, self._stopping),
                    name=f"watch-{self.config.node}",
                    daemon=True,
                )
                self._thread.start()
                background += [
                    asyncio.create_task(self._expiry_loop(), name="expiry"),
                    asyncio.create_task(self.api.status_loop(), name="status"),
                    asyncio.create_task(
                        self.api.heartbeat_loop(self.config.heartbeat), name="heartbeat"
                    ),
                ]
            if self.config.janitor:
                background.append(asyncio.create_task(self._janitor_loop(), name="janitor"))
            self.ready.set()
            while not stop.is_set():
                try:
                    kind, obj = await asyncio.wait_for(self._events.get(), timeout=0.2)
                except TimeoutError:
                    continue
                try:
                    await self._handle(kind, obj)
                except ChaosaaError as exc:
                    log.warning("handling %s failed: %s", kind, exc)
        finally:
            self._stopping.set()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if self.config.node:
                await asyncio.shield(self.shutdown())

    async def recover(self) -> None:
        """Remove every chaosaa rule on the node: what a crashed agent left behind."""
        devs = await devices(self.shell)
        failures = await execute_all(teardown(devs), self.run_cmd)
        for f in failures:
            log.warning("startup cleanup: %s", f)
        log.info("node %s: removed any chaosaa rules left on %s", self.config.node, devs)

    async def shutdown(self) -> None:
        """SIGTERM: revert everything applied, report it, drop the heartbeat."""
        async with self._lock:
            for t in self.tracked.values():
                if t.rules is not None:
                    await self._revert(t, "AgentStopped", "the agent stopped; rules reverted")
        with contextlib.suppress(ChaosaaError):
            await self.recover()
        await self.api.flush_status(deadline=2.0)
        await self.api.drop_heartbeat()

    # ------------------------------------------------------------------ watch

    def _post(self, kind: str, obj: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._events.put_nowait, (kind, obj))

    # ------------------------------------------------------------------ events

    async def _handle(self, kind: str, obj: Any) -> None:
        if kind == "SYNC":
            present = {(o.get("metadata") or {}).get("uid") for o in obj}
            for uid in [u for u in self.tracked if u not in present]:
                await self._forget(uid, "the NetworkFault is gone")
            for o in obj:
                await self._object(o)
        elif kind in ("ADDED", "MODIFIED"):
            await self._object(obj)
        elif kind == "DELETED":
            uid = str((obj.get("metadata") or {}).get("uid"))
            if uid in self.tracked:
                await self._forget(uid, "the NetworkFault was deleted")

    async def _forget(self, uid: str, why: str) -> None:
        async with self._lock:
            t = self.tracked.pop(uid, None)
            if t is not None and t.rules is not None:
                await self._revert(t, "Deleted", why, report=False)

    async def _object(self, obj: dict[str, Any]) -> None:
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        if spec.get("node") != self.config.node:
            return
        name, uid = str(meta.get("name")), str(meta.get("uid"))
        finalizers = meta.get("finalizers") or []
        if meta.get("deletionTimestamp"):
            await self._forget(uid, "the NetworkFault is being deleted")
            if nf.FINALIZER in finalizers:
                await self.api.set_finalizer(name, meta, present=False)
            return
        expires_at = str(spec.get("expiresAt") or "")
        ttl = float(spec.get("ttlSeconds") or 0)
        spec_hash = _spec_hash(spec)
        t = self.tracked.get(uid)
        if t is not None and t.spec_hash == spec_hash:
            if expires_at != t.expires_at:
                t.expires_at, t.deadline = expires_at, self.clock() + ttl  # renewal
            return
        now_wall = time.time()
        try:
            remaining = nf.parse_time(expires_at) - now_wall
        except ValueError:
            remaining = -1.0
        t_new = Tracked(
            name=name,
            uid=uid,
            fault=None,
            spec_hash=spec_hash,
            expires_at=expires_at,
            deadline=self.clock() + min(ttl, remaining),
            generation=int(meta.get("generation") or 0),
        )
        if t is not None:  # the spec changed: out with the old rules first
            async with self._lock:
                if t.rules is not None:
                    await self._revert(t, "SpecChanged", "spec changed", report=False)
                self.tracked.pop(uid, None)
        self.tracked[uid] = t_new
        try:
            fault = NodeFault.from_spec(spec)
        except InvalidInputError as exc:
            t_new.settled = True
            self._report(t_new, nf.PHASE_FAILED, "InvalidSpec", str(exc))
            return
        t_new.fault = fault
        if remaining <= 0:
            t_new.settled = True
            self._report(
                t_new,
                nf.PHASE_REVERTED,
                "Expired",
                f"expired before it was applied: expiresAt {expires_at} is "
                f"{-remaining:.1f}s in the past on this node's clock (runner dead, or clock skew)",
            )
            return
        if nf.FINALIZER not in finalizers and not await self.api.set_finalizer(
            name, meta, present=True
        ):
            return  # gone meanwhile
        async with self._lock:
            if self.tracked.get(uid) is t_new and not t_new.settled:
                await self._apply(t_new, spec.get("device"))

    # ------------------------------------------------------------------ rules

    def _free_slot(self) -> int:
        used = {t.rules.slot for t in self.tracked.values() if t.rules and t.rules.tc_class}
        for slot in range(1, MAX_SLOT + 1):
            if slot not in used:
                return slot
        raise FaultError(f"no free tc slot on this node ({MAX_SLOT} tc faults active)")

    async def _apply(self, t: Tracked, device: str | None) -> None:
        assert t.fault is not None
        fault = t.fault.with_allow(self.allow)
        rules: NodeRules | None = None
        try:
            dev = self.config.device or device or "lo"  # nft rules need no device
            if fault.uses_tc and not (self.config.device or device):
                dev = await route_device(self.shell, fault.peers)
            rules = rules_for(fault, self._free_slot() if fault.uses_tc else 1, dev)
            await execute(rules.apply, self.run_cmd)
        except (ChaosaaError, ValueError) as exc:
            if rules is not None:  # undo a partial apply
                await execute_all(rules.revert, self.run_cmd)
            t.settled = True
            self._report(t, nf.PHASE_FAILED, "ApplyFailed", str(exc))
            log.warning("NetworkFault %s failed: %s", t.name, exc)
            return
        t.rules = rules
        self._report(
            t,
            nf.PHASE_APPLIED,
            "Applied",
            fault.describe(),
            appliedAt=_stamp(),
            device=dev,
            slot=rules.slot,
        )
        log.info("NetworkFault %s applied on %s: %s", t.name, dev, fault.describe())

    async def _revert(self, t: Tracked, reason: str, message: str, report: bool = True) -> None:
        """Undo a fault's rules (lock held by the caller)."""
        assert t.rules is not None
        failures = await execute_all(t.rules.revert, self.run_cmd)
        t.rules = None
        if failures:
            message += "; revert problems: " + "; ".join(failures)
            log.warning("NetworkFault %s revert: %s", t.name, failures)
        if report:
            self._report(t, nf.PHASE_REVERTED, reason, message, revertedAt=_stamp())
        log.info("NetworkFault %s reverted (%s)", t.name, reason)

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick)
            now = self.clock()
            due = [t for t in self.tracked.values() if t.rules is not None and now >= t.deadline]
            if not due:
                continue
            async with self._lock:
                for t in due:
                    if t.rules is not None and self.clock() >= t.deadline:
                        t.settled = True
                        await self._revert(
                            t,
                            "Expired",
                            "no renewal within ttlSeconds (dead-man switch): rules reverted",
                        )

    # ------------------------------------------------------------------ status, janitor

    def _report(self, t: Tracked, phase: str, reason: str, message: str, **extra: Any) -> None:
        t.status.update(
            phase=phase,
            reason=reason,
            message=message[:1000],
            node=self.config.node,
            observedGeneration=t.generation,
            **extra,
        )
        self.api.report(t.name, t.status)

    async def _janitor_loop(self) -> None:
        while True:
            try:
                for line in await sweep(self.kube, expired_only=True):
                    log.warning("janitor: dead-man switch: %s", line)
            except ChaosaaError as exc:
                log.info("janitor sweep failed: %s", exc)
            await asyncio.sleep(self.config.janitor_interval)
