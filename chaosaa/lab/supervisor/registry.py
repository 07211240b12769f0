"""The fault registry: inject, renew and revert lab faults, and the dead-man switch that
reverts a fault nobody renews at its TTL. What a fault does comes from its plan
(:mod:`chaosaa.lab.faults`): conditions set on the link proxy (each with the fault's TTL,
so they also expire inside the proxy on their own), regions whose processes are frozen
(regionDown; reference-counted, so overlapping faults thaw a region once, at the end), and
node rules in the network namespaces of a system's regions (Galera)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from pydantic import ValidationError

from chaosaa.errors import FaultError
from chaosaa.lab._runtime import iso
from chaosaa.lab.faults import FAULT_TYPES, FaultPlan, FaultRequest, plan
from chaosaa.lab.supervisor.client import ProxyAdmin
from chaosaa.lab.supervisor.config import Layout
from chaosaa.lab.supervisor.netrules import AppliedRules, Namespaces
from chaosaa.lab.supervisor.processes import Processes, freeze, thaw

log = logging.getLogger(__name__)

#: reverted faults kept for ``GET /faults?history=1`` and late verification
HISTORY = 200


class FaultApiError(Exception):
    """A fault API request failed; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ActiveFault:
    id: str
    request: FaultRequest
    plan: FaultPlan
    ttl: float
    expires_mono: float
    created_unix: float = field(default_factory=time.time)
    condition_ids: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    rules: list[AppliedRules] = field(default_factory=list)
    state: str = "active"
    reverted_unix: float | None = None
    revert_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        remaining = max(0.0, self.expires_mono - time.monotonic())
        return {
            "id": self.id,
            "name": self.request.name,
            "type": self.request.type,
            "state": self.state,
            "spec": self.request.model_dump(exclude_none=True),
            "ttl": self.ttl,
            "createdAt": iso(self.created_unix),
            "expiresAt": iso(time.time() + remaining) if self.state == "active" else None,
            "expiresIn": remaining if self.state == "active" else None,
            "conditions": self.plan.conditions,
            "conditionIds": self.condition_ids,
            "stoppedRegions": self.stopped,
            "rules": [
                {"region": region, "rule": rule.to_spec(), "does": rule.describe()}
                for region, rule in self.plan.rules
            ],
            "revertedAt": iso(self.reverted_unix) if self.reverted_unix else None,
            "revertReason": self.revert_reason,
        }


class FaultRegistry:
    def __init__(
        self,
        layout: Layout,
        processes: Processes,
        proxy: ProxyAdmin,
        metrics: CollectorRegistry,
    ) -> None:
        self.layout = layout
        self.regions = layout.regions
        self.system = layout.system
        self.processes = processes
        self.namespaces = Namespaces(self.system.network)
        self.proxy = proxy
        self.faults: dict[str, ActiveFault] = {}
        self.history: list[ActiveFault] = []
        self._stop_refs: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self.faults_gauge = Gauge(
            "chaosaa_lab_faults_active",
            "Faults currently applied in the lab",
            ["type"],
            registry=metrics,
        )
        self.stopped_gauge = Gauge(
            "chaosaa_lab_region_stopped",
            "1 while a region's node process is SIGSTOPped (regionDown)",
            ["region"],
            registry=metrics,
        )

    def find(self, fid: str) -> ActiveFault:
        """An active fault, or else the last reverted one with that id."""
        fault = self.faults.get(fid) or next(
            (f for f in reversed(self.history) if f.id == fid), None
        )
        if fault is None:
            raise FaultApiError(404, f"unknown fault {fid!r}")
        return fault

    def stopped_regions(self) -> set[str]:
        return {r for r, n in self._stop_refs.items() if n > 0}

    def pids(self, region: str) -> list[int]:
        """The running processes regionDown freezes in ``region`` (the lab's children and
        the system's own servers)."""
        pids = [self.processes.running_pid(name) for name in self.system.frozen(region)]
        if None in pids:
            raise FaultApiError(409, f"node {region} is not running")
        return [pid for pid in pids if pid is not None] + self.system.foreign_pids(region)

    async def inject(self, body: dict[str, Any]) -> ActiveFault:
        try:
            req = FaultRequest.model_validate(body)
            if req.id is None:
                req = req.model_copy(update={"id": f"f-{uuid.uuid4().hex[:10]}"})
            fplan = plan(req, self.layout.topology)
        except ValidationError as exc:
            raise FaultApiError(400, _validation_message(exc)) from exc
        except ValueError as exc:
            raise FaultApiError(400, str(exc)) from exc
        async with self._lock:
            fid = str(req.id)
            if fid in self.faults:
                raise FaultApiError(409, f"fault {fid!r} is active; renew or delete it")
            ttl = req.ttl_seconds
            fault = ActiveFault(fid, req, fplan, ttl, time.monotonic() + ttl)
            try:
                for i, cond in enumerate(fplan.conditions):
                    cid = f"{fid}.{i}"
                    status, resp = await self.proxy.call(
                        "POST", "/conditions", {**cond, "id": cid, "ttl": ttl}
                    )
                    if status != 201:
                        raise FaultApiError(502, f"link proxy refused condition: {resp}")
                    fault.condition_ids.append(cid)
                for region in fplan.stop_regions:
                    pids = self.pids(region)
                    if self._stop_refs.get(region, 0) == 0:
                        await freeze(pids)
                    self._stop_refs[region] = self._stop_refs.get(region, 0) + 1
                    fault.stopped.append(region)
                    self.stopped_gauge.labels(region).set(1)
                for region, rule in fplan.rules:
                    try:
                        fault.rules.append(await self.namespaces.apply(region, rule))
                    except FaultError as exc:
                        raise FaultApiError(422, f"region {region}: {exc}") from exc
            except BaseException:
                await self._undo(fault)
                raise
            self.faults[fid] = fault
            self._update_gauges()
            log.info("fault %s injected: %s", fid, req.model_dump(exclude_none=True))
            return fault

    async def renew(self, fid: str, ttl: float | None) -> ActiveFault:
        async with self._lock:
            fault = self.faults.get(fid)
            if fault is None:
                raise FaultApiError(404, f"no active fault {fid!r} (expired or reverted?)")
            ttl = fault.ttl if ttl is None else ttl
            if not 0 < ttl <= 3600:
                raise FaultApiError(400, "ttl must be > 0 and <= 3600 seconds")
            for cid in fault.condition_ids:
                status, resp = await self.proxy.call(
                    "POST", f"/conditions/{cid}/renew", {"ttl": ttl}
                )
                if status != 200:
                    raise FaultApiError(409, f"condition {cid} could not be renewed: {resp}")
            fault.ttl = ttl
            fault.expires_mono = time.monotonic() + ttl
            return fault

    async def revert(self, fid: str, reason: str) -> ActiveFault:
        async with self._lock:
            fault = self.faults.pop(fid, None)
            if fault is None:
                raise FaultApiError(404, f"no active fault {fid!r} (expired or reverted?)")
            await self._undo(fault)
            fault.state = "reverted"
            fault.reverted_unix = time.time()
            fault.revert_reason = reason
            self.history.append(fault)
            del self.history[:-HISTORY]
            self._update_gauges()
            log.info("fault %s reverted (%s)", fid, reason)
            return fault

    async def revert_all(self, reason: str) -> list[str]:
        ids = list(self.faults)
        for fid in ids:
            with contextlib.suppress(FaultApiError):
                await self.revert(fid, reason)
        return ids

    async def expire_loop(self) -> None:
        """Dead-man switch: a fault nobody renews reverts itself at its TTL."""
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            for fid, fault in list(self.faults.items()):
                if fault.expires_mono <= now:
                    with contextlib.suppress(FaultApiError):
                        await self.revert(fid, "ttl expired")

    async def _undo(self, fault: ActiveFault) -> None:
        for applied in fault.rules:
            await self.namespaces.revert(applied)
        for cid in fault.condition_ids:
            await self.proxy.delete_quietly(f"/conditions/{cid}")
        for region in fault.stopped:
            self._stop_refs[region] -= 1
            if self._stop_refs[region] == 0:
                self.stopped_gauge.labels(region).set(0)
                with contextlib.suppress(FaultApiError, ProcessLookupError):
                    await thaw(self.pids(region))

    def _update_gauges(self) -> None:
        for t in FAULT_TYPES:
            self.faults_gauge.labels(t).set(
                sum(1 for f in self.faults.values() if f.request.type == t)
            )


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
