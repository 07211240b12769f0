"""The seam between the engine and the systems it breaks.

A target knows how to reach the regions of one kind of deployment (the local lab, kind
clusters, any Kubernetes clusters) and how to inject, verify, renew and revert each fault
type there. Adding a target is one new module with one ``Target`` subclass registered by
``@register``; the engine never imports a target module by name.

Lifecycle as the engine drives it::

    target = target_for(gameday.spec.target, options)
    endpoints = await target.open()          # preflight: reachable? (may start an ephemeral lab)
    await target.acquire_lease(holder, ttl)  # one run per target
    applied = await target.inject(fault, ttl)
    while not await target.verify_effect(applied): ...   # t_effect
    await target.renew(applied, ttl)         # every ~2 s (dead-man switch)
    await target.revert(applied)             # always, even on SIGTERM
    await target.verify_reverted(applied)
    await target.release_lease(holder)
    await target.close()
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from chaosaa.errors import InvalidInputError
from chaosaa.spec.model import Fault
from chaosaa.spec.model import Target as TargetSpec


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
    #: ``replicationLag`` (used when an SLO gives no ``promql``)
    queries: Mapping[str, str] = field(default_factory=dict)
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
class AppliedFault:
    """A fault the target has accepted; carries what revert needs."""

    fault: Fault
    #: target-specific identifier(s) of what was created
    ref: str
    actions: list[PlannedAction] = field(default_factory=list)
    #: target-private state needed to revert exactly (e.g. previous replica counts)
    state: dict[str, Any] = field(default_factory=dict)
    #: what the last verify_effect / verify_reverted found not done yet, for the error
    #: that a verification timeout raises ("eu/Deployment/shop/web: 2 pods serving");
    #: a target that fills it sets it afresh on every call
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


class Target(ABC):
    """Base class of every target. Methods that do I/O are async; ``plan`` is pure."""

    kind: ClassVar[str]
    supported_faults: ClassVar[frozenset[str]]
    #: how often the engine polls verify_effect / verify_reverted; it bounds the error
    #: of t_effect and t_reverted. Remote targets poll slower so that the polling does
    #: not compete with the controllers that carry the fault out.
    verify_interval: ClassVar[float] = 0.01

    def __init__(self, spec: TargetSpec, options: TargetOptions) -> None:
        self.spec = spec
        self.options = options

    def check(self, faults: list[Fault]) -> None:
        """Reject faults this target cannot do, before anything is touched."""
        for f in faults:
            if f.type not in self.supported_faults:
                raise InvalidInputError(
                    f"fault {f.name!r}: type {f.type} is not supported by target kind "
                    f"{self.kind} (supported: {', '.join(sorted(self.supported_faults))})"
                )

    @abstractmethod
    def plan(self, fault: Fault) -> list[PlannedAction]:
        """Describe exactly what ``inject`` would do, touching nothing."""

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

    @abstractmethod
    async def inject(self, fault: Fault, ttl: float) -> AppliedFault:
        """Request the fault with a TTL; return as soon as it is requested."""

    @abstractmethod
    async def verify_effect(self, applied: AppliedFault) -> bool:
        """True once the fault is verifiably in place (rules read back, link cut observed)."""

    @abstractmethod
    async def renew(self, applied: AppliedFault, ttl: float) -> None:
        """Push the fault's expiry ``ttl`` seconds into the future."""

    @abstractmethod
    async def revert(self, applied: AppliedFault) -> None:
        """Remove exactly what ``inject`` created (idempotent)."""

    @abstractmethod
    async def verify_reverted(self, applied: AppliedFault) -> bool:
        """True once nothing of the fault remains."""

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
