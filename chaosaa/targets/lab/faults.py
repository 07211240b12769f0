"""How the lab carries out each fault type: a request to the supervisor's fault API.

Every lab fault is one ``POST /faults`` (the supervisor translates it into link-proxy
conditions or stops processes), verified by ``GET /faults/{id}/verify``, renewed and
deleted by id. A handler per fault type says what it adds to the request and, for the
plan, which lab mechanism does it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic

from chaosaa.errors import FaultError
from chaosaa.spec.faults import (
    BandwidthFault,
    BlackholeFault,
    FaultBase,
    LatencyFault,
    PacketLossFault,
    RegionDownFault,
    ReplicationLagFault,
)
from chaosaa.targets.base import AppliedFault, F, FaultHandler, PlannedAction
from chaosaa.targets.lab.api import HttpStatusError, LabApi


@dataclass
class LabFaultState:
    """What the supervisor answered: the accepted fault and its last verification."""

    accepted: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)


class SupervisorFault(FaultHandler[LabApi, F, LabFaultState], Generic[F]):
    """A fault the lab supervisor carries out; subclasses name its parameters."""

    #: which part of the lab does it, for the plan
    mechanism: ClassVar[str]

    @classmethod
    def params(cls, fault: F) -> dict[str, Any]:
        """The fault's own fields of the ``POST /faults`` body (besides the scope)."""
        return {}

    def plan(self, fault: F) -> list[PlannedAction]:
        action = f"{fault.describe()} ({self.mechanism})"
        return [PlannedAction(fault.name, item, action) for item in fault.scope().items()]

    def new_state(self, fault: F) -> LabFaultState:
        return LabFaultState()

    async def apply(self, applied: AppliedFault[F, LabFaultState], ttl: float) -> None:
        body = fault_body(applied.fault, ttl, applied.ref)
        try:
            applied.state.accepted = await self.target.supervisor_call("POST", "/faults", body)
        except HttpStatusError as exc:
            raise FaultError(
                f"fault {applied.fault.name!r}: the lab refused it: {exc.detail}"
            ) from exc

    async def verify(self, applied: AppliedFault[F, LabFaultState]) -> bool:
        return await self._verified(applied, "active")

    async def renew(self, applied: AppliedFault[F, LabFaultState], ttl: float) -> None:
        try:
            await self.target.supervisor_call("POST", f"/faults/{applied.ref}/renew", {"ttl": ttl})
        except HttpStatusError as exc:
            raise FaultError(
                f"fault {applied.fault.name!r} could not be renewed (it may have expired): "
                f"{exc.detail}"
            ) from exc

    async def revert(self, applied: AppliedFault[F, LabFaultState]) -> None:
        try:
            await self.target.supervisor_call("DELETE", f"/faults/{applied.ref}", ok=(200, 404))
        except HttpStatusError as exc:
            raise FaultError(f"fault {applied.fault.name!r}: revert failed: {exc.detail}") from exc

    async def verify_reverted(self, applied: AppliedFault[F, LabFaultState]) -> bool:
        try:
            return await self._verified(applied, "reverted")
        except HttpStatusError as exc:
            if exc.status != 404:
                return False
            listed = await self.target.supervisor_call("GET", "/faults")
            return all(f["id"] != applied.ref for f in listed["faults"])

    async def _verified(self, applied: AppliedFault[F, LabFaultState], want: str) -> bool:
        """Ask the supervisor whether the fault is in ``want`` state and checked so."""
        applied.pending = []
        try:
            result = await self.target.supervisor_call("GET", f"/faults/{applied.ref}/verify")
        except HttpStatusError:
            if want == "reverted":
                raise
            return False
        applied.state.verification = result
        applied.pending = _failed_checks(result, want)
        return bool(result.get("state") == want and result.get("verified"))


class LinkFault(SupervisorFault[F]):
    mechanism = "link proxies"


class BlackholeOnLab(SupervisorFault[BlackholeFault]):
    mechanism = "link proxies hold the streams"

    @classmethod
    def params(cls, fault: BlackholeFault) -> dict[str, Any]:
        return {"direction": fault.direction, "clients": fault.cuts_clients}


class LatencyOnLab(LinkFault[LatencyFault]):
    @classmethod
    def params(cls, fault: LatencyFault) -> dict[str, Any]:
        return {"delay": fault.delay, "jitter": fault.jitter, "clients": fault.clients}


class ReplicationLagOnLab(SupervisorFault[ReplicationLagFault]):
    mechanism = "link proxies, replication links only"

    @classmethod
    def params(cls, fault: ReplicationLagFault) -> dict[str, Any]:
        return {"mode": fault.mode, "bandwidth": fault.bandwidth / 8}  # the API takes bytes/s


class RegionDownOnLab(SupervisorFault[RegionDownFault]):
    mechanism = (
        "SIGSTOP the region's node process (and its database server and exporter, with "
        "every descendant), SIGCONT on revert"
    )


class BandwidthOnLab(LinkFault[BandwidthFault]):
    @classmethod
    def params(cls, fault: BandwidthFault) -> dict[str, Any]:
        return {"rate": fault.rate / 8}  # the API takes bytes/s


class PacketLossOnLab(SupervisorFault[PacketLossFault]):
    mechanism = "link proxies stall the chunks for a TCP retransmission timeout"

    @classmethod
    def params(cls, fault: PacketLossFault) -> dict[str, Any]:
        return {"percent": fault.percent}


HANDLERS: dict[str, type[SupervisorFault[Any]]] = {
    "blackhole": BlackholeOnLab,
    "latency": LatencyOnLab,
    "replicationLag": ReplicationLagOnLab,
    "regionDown": RegionDownOnLab,
    "bandwidth": BandwidthOnLab,
    "packetLoss": PacketLossOnLab,
}


def fault_body(fault: FaultBase, ttl: float, fault_id: str) -> dict[str, Any]:
    """The supervisor's ``POST /faults`` body for a GameDay fault."""
    kind = getattr(fault, "type", "")
    scope = fault.scope()
    body: dict[str, Any] = {"id": fault_id, "name": fault.name, "type": kind, "ttl": ttl}
    if scope.partition:
        body["partition"] = [list(group) for group in scope.partition]
    elif scope.regions:
        body["regions"] = list(scope.regions)
    else:
        body["links"] = [list(link) for link in scope.links]
    return {**body, **HANDLERS[kind].params(fault)}


def _failed_checks(result: dict[str, Any], want: str) -> list[str]:
    """What the supervisor's verification found not holding, for a timeout's message."""
    if result.get("state") != want:
        return [f"fault state {result.get('state')} (want {want})"]
    out = []
    for check in result.get("checks") or []:
        if not check.get("ok"):
            seen = (check.get("probe") or {}).get("outcome")
            out.append(str(check.get("check")) + (f" (probe: {seen})" if seen else ""))
    return out
