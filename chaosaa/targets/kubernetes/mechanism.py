"""How the kubernetes target carries faults out: mechanisms, combined into handlers.

A :class:`Mechanism` is one way of changing the clusters (scaling workloads and cordoning
nodes, NetworkPolicies, NetworkFaults for the node agent) with the full life of a fault:
apply, verify, renew, revert, verify-reverted. A fault type's handler
(:class:`MechanismHandler`) runs one or more of them on one typed state.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from chaosaa.errors import ChaosaaError, FaultError
from chaosaa.spec.faults import FaultBase
from chaosaa.targets.base import AppliedFault, F, FaultHandler, PlannedAction, S
from chaosaa.targets.kubernetes.regions import Regions

F_contra = TypeVar("F_contra", bound=FaultBase, contravariant=True)
S_contra = TypeVar("S_contra", contravariant=True)


class Mechanism(ABC, Generic[F_contra, S_contra]):
    """One way of changing the clusters for a fault, on its part of the fault's state."""

    def __init__(self, regions: Regions) -> None:
        self.regions = regions

    @abstractmethod
    def touched(self, fault: F_contra) -> list[str]:
        """The regions whose namespaces or nodes it changes (for the plan and the
        preflight's check of protected nodes)."""

    @abstractmethod
    def planned(self, fault: F_contra) -> list[tuple[str, str]]:
        """(scope, how) of everything it would do, e.g. ("namespace shop@prod-eu", "cordon")."""

    @abstractmethod
    async def apply(self, fault: F_contra, state: S_contra, ttl: float) -> None:
        """Make the change, recording in ``state`` what was changed as it goes."""

    @abstractmethod
    async def verify(self, fault: F_contra, state: S_contra, pending: list[str]) -> bool:
        """True once the change is in place; else add what is missing to ``pending``."""

    @abstractmethod
    async def renew(self, fault: F_contra, state: S_contra, ttl: float) -> None:
        """Push the change's expiry ``ttl`` seconds into the future."""

    @abstractmethod
    async def revert(self, fault: F_contra, state: S_contra) -> list[str]:
        """Undo the change (found by its labels: also after a partial apply); the problems."""

    @abstractmethod
    async def verify_reverted(self, fault: F_contra, state: S_contra, pending: list[str]) -> bool:
        """True once nothing of the change remains; else add what does to ``pending``."""


class MechanismHandler(FaultHandler[Regions, F, S]):
    """A fault type carried out by mechanisms: applied in order, the rest together."""

    def __init__(self, target: Regions) -> None:
        super().__init__(target)
        self.mechanisms = self.build(target)

    @abstractmethod
    def build(self, regions: Regions) -> Sequence[Mechanism[F, S]]:
        """The mechanisms of this fault type."""

    def touched(self, fault: F) -> list[str]:
        return list(dict.fromkeys(r for m in self.mechanisms for r in m.touched(fault)))

    def plan(self, fault: F) -> list[PlannedAction]:
        what = fault.describe()
        return [
            PlannedAction(fault.name, scope, f"{what} ({how})")
            for m in self.mechanisms
            for scope, how in m.planned(fault)
        ]

    async def apply(self, applied: AppliedFault[F, S], ttl: float) -> None:
        for m in self.mechanisms:
            await m.apply(applied.fault, applied.state, ttl)

    async def verify(self, applied: AppliedFault[F, S]) -> bool:
        applied.pending = []
        done = await asyncio.gather(
            *(m.verify(applied.fault, applied.state, applied.pending) for m in self.mechanisms)
        )
        return all(done)

    async def renew(self, applied: AppliedFault[F, S], ttl: float) -> None:
        errors = await settle(m.renew(applied.fault, applied.state, ttl) for m in self.mechanisms)
        if errors:
            raise FaultError(f"fault {applied.fault.name!r}: renewal failed: {errors[0]}")

    async def revert(self, applied: AppliedFault[F, S]) -> None:
        problems = await asyncio.gather(
            *(m.revert(applied.fault, applied.state) for m in self.mechanisms)
        )
        if failed := [p for ps in problems for p in ps]:
            raise FaultError(f"fault {applied.fault.name!r}: revert failed: {'; '.join(failed)}")

    async def verify_reverted(self, applied: AppliedFault[F, S]) -> bool:
        applied.pending = []
        done = await asyncio.gather(
            *(
                m.verify_reverted(applied.fault, applied.state, applied.pending)
                for m in self.mechanisms
            )
        )
        return all(done)


async def settle(calls: Iterable[Awaitable[Any]]) -> list[BaseException]:
    """Run every call to its end; the errors, in order."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    return [r for r in results if isinstance(r, BaseException)]


async def problems(calls: Iterable[Awaitable[Any]]) -> list[str]:
    """Run every call to its end; what failed (a ChaosaaError), in order."""

    async def guarded(call: Awaitable[Any]) -> str | None:
        try:
            await call
        except ChaosaaError as exc:
            return str(exc)
        return None

    return [p for p in await asyncio.gather(*(guarded(c) for c in calls)) if p is not None]
