"""The seam between the engine and the systems it breaks.

A target knows how to reach the regions of one kind of deployment (the local lab, kind
clusters, any Kubernetes clusters) and how to inject, verify, renew and revert each fault
type there. Adding a target is one new module with one ``Target`` subclass registered by
``@register``; the engine never imports a target module by name. A target supports a fault
type by listing a ``FaultHandler`` for it in ``Target.handlers``; a fault without a
handler is refused by ``check`` before anything is touched.

Lifecycle as the engine drives it::

    target = target_for(gameday.spec.target, options)
    endpoints = await target.open()          # preflight: reachable? (may start an ephemeral lab)
    await target.preflight(faults)           # can it carry each fault out? (kernel features)
    await target.acquire_lease(holder, ttl)  # one run per target (and its settings)
    applied = await target.inject(fault, ttl)   # -> the fault type's handler
    while not await target.verify_effect(applied): ...   # t_effect
    await target.renew(applied, ttl)         # every ~2 s (dead-man switch)
    await target.revert(applied)             # always, even on SIGTERM
    await target.verify_reverted(applied)
    await target.release_lease(holder)
    await target.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from chaosaa.canary import Connection
from chaosaa.errors import ChaosaaError, InvalidInputError
from chaosaa.spec.faults import Fault, FaultBase
from chaosaa.spec.model import Target as TargetSpec

log = logging.getLogger(__name__)

F = TypeVar("F", bound=FaultBase)
S = TypeVar("S")
#: what a target gives its handlers to work with
C = TypeVar("C")
#: how long an interrupted injection may take to finish before it is reverted anyway
UNDO_WAIT = 60.0


@dataclass(frozen=True)
class Endpoints:
    """Where the system under test and its metrics are reached."""

    #: global entry point (router / GSLB) that traffic goes to
    entry_url: str | None
    #: per-region service URLs: per-region reads for lost writes and canary lag
    regions: Mapping[str, str] = field(default_factory=dict)
    #: a Prometheus URL the target supplies (the lab does); the GameDay's url wins
    prometheus_url: str | None = None
    #: default PromQL the target knows for its service, keys: ``successRatio``,
    #: ``replicationLag`` (used when an SLO gives no ``promql``), ``conflicts``,
    #: ``regionReady`` (per region, label ``region``: 1 while it accepts writes)
    queries: Mapping[str, str] = field(default_factory=dict)
    #: databases the target supplies for canaries (a lab running a database system):
    #: datastore name -> region -> connection (credentials resolved)
    datastores: Mapping[str, Mapping[str, Connection]] = field(default_factory=dict)
    #: how far the default queries lag behind what they measure, beyond the range
    #: query's step + scrape interval (e.g. irate needs a second scrape, and requests are
    #: counted when they complete): added to the error bound of numbers derived from them
    query_delay_seconds: float = 0.0


@dataclass(frozen=True)
class PlannedAction:
    """One concrete thing a fault will do, for ``chaosaa plan`` and the report."""

    fault: str
    scope: str  # e.g. "region eu", "link us->eu", "node us-worker-1", "namespace shop@prod-us"
    action: str  # e.g. "drop all packets (both directions)"


@dataclass
class AppliedFault(Generic[F, S]):
    """A fault the target has accepted, with the handler's typed state that revert needs."""

    fault: F
    #: target-specific identifier of what was created (a lab fault id, a label value)
    ref: str
    #: what the handler created so far (filled in while it applies), e.g. replica counts
    state: S
    #: what the last verify / verify_reverted found not done yet, for the error that a
    #: verification timeout raises ("eu/Deployment/shop/web: 2 pods serving"); a handler
    #: that fills it sets it afresh on every call
    pending: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TargetOptions:
    """Run-level options that reach the target (from flags and CHAOSAA_* variables)."""

    run_id: str = "manual"
    allowed_contexts: tuple[str, ...] = ()
    kubeconfig: str | None = None
    #: lab: where an ephemeral lab keeps its state; None = a temporary directory
    state_dir: str | None = None
    #: start an ephemeral environment when none is running (lab only)
    ephemeral: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetEvent:
    """Something the target itself observed (e.g. the lab router's failover log)."""

    at: float  # unix seconds (UTC)
    event: str
    detail: Mapping[str, Any] = field(default_factory=dict)


class FaultHandler(ABC, Generic[C, F, S]):
    """How one target carries out one fault type, with ``S`` as its state.

    A target lists its handlers in ``Target.handlers``; the engine never sees them: it
    calls the target, which dispatches on the fault's type. ``apply`` fills the state as
    it goes, so that a half-done injection can be reverted exactly.
    """

    def __init__(self, target: C) -> None:
        #: what the target gives its handlers (``Target.handler_context``)
        self.target = target

    def check(self, fault: F) -> None:
        """Refuse, before anything is touched, what this target cannot do of the fault."""

    async def preflight(self, fault: F) -> None:
        """Probe the opened target, touching nothing, for what ``check`` cannot know
        offline (a kernel feature on the nodes); raise to refuse the fault."""

    @abstractmethod
    def plan(self, fault: F) -> list[PlannedAction]:
        """Describe exactly what ``apply`` would do, touching nothing."""

    @abstractmethod
    def new_state(self, fault: F) -> S:
        """The empty state ``apply`` fills in."""

    @abstractmethod
    async def apply(self, applied: AppliedFault[F, S], ttl: float) -> None:
        """Request the fault with a TTL; return as soon as it is requested."""

    @abstractmethod
    async def verify(self, applied: AppliedFault[F, S]) -> bool:
        """True once the fault is verifiably in place (rules read back, link cut observed)."""

    @abstractmethod
    async def renew(self, applied: AppliedFault[F, S], ttl: float) -> None:
        """Push the fault's expiry ``ttl`` seconds into the future."""

    @abstractmethod
    async def revert(self, applied: AppliedFault[F, S]) -> None:
        """Remove exactly what ``apply`` created (idempotent; also after a partial apply)."""

    @abstractmethod
    async def verify_reverted(self, applied: AppliedFault[F, S]) -> bool:
        """True once nothing of the fault remains."""


#: what the engine holds: an applied fault of any type
Applied = AppliedFault[Any, Any]


class Target(ABC):
    """Base class of every target. Methods that do I/O are async; ``plan`` is pure."""

    kind: ClassVar[str]
    #: fault type -> the handler class that carries it out on this target
    handlers: ClassVar[Mapping[str, type[FaultHandler[Any, Any, Any]]]]
    #: how often the engine polls verify_effect / verify_reverted; it bounds the error
    #: of t_effect and t_reverted. Remote targets poll slower so that the polling does
    #: not compete with the controllers that carry the fault out.
    verify_interval: ClassVar[float] = 0.01

    def __init__(self, spec: TargetSpec, options: TargetOptions) -> None:
        self.spec = spec
        self.options = options
        context = self.handler_context()
        self._handlers = {t: cls(context) for t, cls in self.handlers.items()}

    def handler_context(self) -> Any:
        """What this target's fault handlers work with (a client, the regions' nodes)."""
        return self

    @property
    def supported_faults(self) -> frozenset[str]:
        return frozenset(self.handlers)

    @classmethod
    def unsupported(cls, fault: FaultBase) -> str | None:
        """Why this kind of target cannot do the fault, or None when it can."""
        kind = getattr(fault, "type", "?")
        if kind in cls.handlers:
            return None
        return (
            f"type {kind} is not supported by target kind {cls.kind} "
            f"(supported: {', '.join(sorted(cls.handlers))})"
        )

    def _handler(self, fault: FaultBase) -> FaultHandler[Any, Any, Any]:
        reason = self.unsupported(fault)
        if reason is not None:
            raise InvalidInputError(f"fault {fault.name!r}: {reason}")
        return self._handlers[getattr(fault, "type", "")]

    def check(self, faults: list[Fault]) -> None:
        """Refuse faults this target cannot do, before anything is touched."""
        for f in faults:
            self._handler(f).check(f)

    def plan(self, fault: Fault) -> list[PlannedAction]:
        """Describe exactly what ``inject`` would do, touching nothing."""
        return self._handler(fault).plan(fault)

    async def preflight(self, faults: list[Fault]) -> None:
        """After ``open``, before anything is injected: each handler's live probe."""
        # every probe finishes (none is left running), then the first refusal is raised
        probes = (self._handler(f).preflight(f) for f in faults)
        for result in await asyncio.gather(*probes, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    def fault_ref(self, fault: Fault) -> str:
        """The identifier of what this target creates for a fault of this run."""
        return fault.name

    def settings(self) -> list[str]:
        """What the target sets up for the run besides faults (``chaosaa plan``), e.g. the
        lab's service capacity; undone when the run gives the lease back."""
        return []

    @abstractmethod
    async def open(self) -> Endpoints:
        """Preflight: reach the target (raise TargetUnreachableError) and return endpoints."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and stop anything ``open`` started (an ephemeral lab)."""

    async def acquire_lease(self, holder: str, ttl: float) -> None:  # noqa: B027
        """Take the one-run-per-target lease or raise LeaseHeldError."""

    async def renew_lease(self, holder: str, ttl: float) -> None:  # noqa: B027
        """Keep the lease; called with the fault renewals."""

    async def release_lease(self, holder: str) -> None:  # noqa: B027
        """Give the lease back (idempotent)."""

    def new_applied(self, fault: Fault) -> Applied:
        """The handle of a fault about to be injected, with its handler's empty state: the
        caller holds it before ``inject`` is called, so whatever happens to that call, it
        can revert and verify the fault (a handler reverts a partial apply too)."""
        return AppliedFault(fault, self.fault_ref(fault), self._handler(fault).new_state(fault))

    async def inject(self, fault: Fault, ttl: float, applied: Applied | None = None) -> Applied:
        """Request the fault with a TTL; return as soon as it is requested. ``applied``:
        the handle from :meth:`new_applied` to fill (default: a new one).

        Calls already sent (a docker exec, an API request in a thread) cannot be called
        back, so an injection that is cancelled (SIGTERM) or fails midway is finished and
        then reverted, rather than abandoned half-done.
        """
        handler = self._handler(fault)
        if applied is None:
            applied = self.new_applied(fault)
        work = asyncio.ensure_future(handler.apply(applied, ttl))
        try:
            await asyncio.shield(work)
        except (asyncio.CancelledError, ChaosaaError):
            await asyncio.shield(self._undo(handler, work, applied))
            raise
        return applied

    async def _undo(
        self, handler: FaultHandler[Any, Any, Any], work: asyncio.Future[None], applied: Applied
    ) -> None:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(work), timeout=UNDO_WAIT)
        try:
            await handler.revert(applied)
        except ChaosaaError as exc:
            log.error(
                "fault %s: revert after an interrupted injection: %s", applied.fault.name, exc
            )

    async def verify_effect(self, applied: Applied) -> bool:
        """True once the fault is verifiably in place (rules read back, link cut observed)."""
        return await self._handler(applied.fault).verify(applied)

    async def renew(self, applied: Applied, ttl: float) -> None:
        """Push the fault's expiry ``ttl`` seconds into the future."""
        await self._handler(applied.fault).renew(applied, ttl)

    async def revert(self, applied: Applied) -> None:
        """Remove exactly what ``inject`` created (idempotent)."""
        await self._handler(applied.fault).revert(applied)

    async def verify_reverted(self, applied: Applied) -> bool:
        """True once nothing of the fault remains."""
        return await self._handler(applied.fault).verify_reverted(applied)

    @abstractmethod
    async def rollback(self) -> list[str]:
        """Find and remove every chaosaa artefact on the target; describe what was removed."""

    async def events(self, since: float) -> list[TargetEvent]:
        """Ground-truth events the target records itself (default: none)."""
        return []


_MODULES = {
    "lab": "chaosaa.targets.lab",
    "kind": "chaosaa.targets.kind",
    "kubernetes": "chaosaa.targets.kubernetes",
}
_REGISTRY: dict[str, type[Target]] = {}


def register(cls: type[Target]) -> type[Target]:
    """Class decorator: make a target available under ``cls.kind``."""
    _REGISTRY[cls.kind] = cls
    return cls


def target_class(kind: str) -> type[Target]:
    if kind not in _REGISTRY and kind in _MODULES:
        try:
            importlib.import_module(_MODULES[kind])  # registers itself
        except ModuleNotFoundError as exc:
            if exc.name != _MODULES[kind]:
                raise
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise InvalidInputError(f"target kind {kind!r} is not available in this build") from None


def target_for(spec: TargetSpec, options: TargetOptions) -> Target:
    return target_class(spec.kind)(spec, options)
