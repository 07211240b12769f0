"""The ``kubernetes`` target: regions are kube contexts (and namespaces in them).

Lifecycle: ``open`` checks the allow-list, connects to every context and checks the blast
radius (:mod:`~chaosaa.targets.kubernetes.safety`) before anything is touched; the run's
Lease (:mod:`~chaosaa.targets.kubernetes.lease`) is taken with a sweep of the expired
leftovers of earlier runs on the same namespaces and nodes (the dead-man switch of a run
that died, :mod:`chaosaa.kube.janitor`); ``rollback`` removes every chaosaa artefact in the
allow-listed contexts. How each fault type is carried out:
:mod:`~chaosaa.targets.kubernetes.faults`.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from chaosaa.kube import Client, clients_for, meta
from chaosaa.kube.janitor import sweep
from chaosaa.rules import resource as nf
from chaosaa.spec.faults import Fault
from chaosaa.spec.model import Target as TargetSpec
from chaosaa.targets.base import Endpoints, Target, TargetOptions, register
from chaosaa.targets.kubernetes.faults import HANDLERS
from chaosaa.targets.kubernetes.lease import RunLease, drop_all
from chaosaa.targets.kubernetes.mechanism import MechanismHandler
from chaosaa.targets.kubernetes.networkfaults import release_unanswered
from chaosaa.targets.kubernetes.regions import Regions
from chaosaa.targets.kubernetes.safety import check_allowlist, check_blast_radius

log = logging.getLogger(__name__)


@register
class KubernetesTarget(Target):
    """Any Kubernetes clusters, one kube context per region."""

    kind: ClassVar[str] = "kubernetes"
    handlers = HANDLERS
    #: each poll is a handful of API calls per region: 20 polls a second is plenty next
    #: to what the controllers need to act, and leaves the API servers to them
    verify_interval: ClassVar[float] = 0.05

    def __init__(self, spec: TargetSpec, options: TargetOptions) -> None:
        self.regions = Regions(spec, options.run_id)
        self.lease = RunLease(self.regions)
        self._faults: list[Fault] = []
        super().__init__(spec, options)

    def handler_context(self) -> Regions:
        return self.regions

    @property
    def rollback_mode(self) -> bool:
        return bool(self.options.extra.get("rollback"))

    def fault_ref(self, fault: Fault) -> str:
        return nf.label_value(fault.name)

    def check(self, faults: list[Fault]) -> None:
        super().check(faults)
        self._faults = list(faults)  # open() refuses protected nodes they touch

    def _touched(self) -> set[str]:
        """The regions whose namespaces or nodes the checked faults touch."""
        out: set[str] = set()
        for fault in self._faults:
            handler = self._handler(fault)
            assert isinstance(handler, MechanismHandler)
            out.update(handler.touched(fault))
        return out

    # -- lifecycle ---------------------------------------------------------------------
    async def open(self) -> Endpoints:
        contexts = self.regions.contexts()
        check_allowlist(contexts, self.options.allowed_contexts)
        clients = await clients_for(contexts, self.options.kubeconfig)
        self.regions.open({ctx: Client(api) for ctx, api in clients.items()})
        if not self.rollback_mode:
            await check_blast_radius(self.regions, self._touched())
        return Endpoints(
            entry_url=self.spec.url,
            regions={n: r.endpoint for n, r in self.spec.regions.items() if r.endpoint},
        )

    async def close(self) -> None:
        self.regions.close()

    async def rollback(self) -> list[str]:
        if not self.regions.is_open:
            await self.open()
        out: list[str] = []
        for ctx, region in self.regions.by_context().items():
            # everything of chaosaa's in the allow-listed context, not only the GameDay's
            # namespaces: the big red button must also find what a renamed GameDay left
            out += await sweep(region.kube, expired_only=False, context=ctx)
            out += await release_unanswered(region)
            out += await drop_all(region)
        return out

    # -- one run per target ------------------------------------------------------------
    async def acquire_lease(self, holder: str, ttl: float) -> None:
        await self.lease.acquire(holder, ttl)
        # The dead-man switch for a run that died: its expired leftovers go now.
        for line in await self._sweep_expired():
            log.warning("restored leftover of an earlier run: %s", line)

    async def renew_lease(self, holder: str, ttl: float) -> None:
        await self.lease.renew(holder, ttl)

    async def release_lease(self, holder: str) -> None:
        await self.lease.release(holder)

    async def _sweep_expired(self) -> list[str]:
        out: list[str] = []
        for ctx, first in self.regions.by_context().items():
            regions = [r for r in self.regions if r.context == ctx]
            out += await sweep(
                first.kube,
                namespaces=sorted({ns for r in regions for ns in r.namespaces}),
                nodes=sorted({meta(n)["name"] for r in regions for n in r.nodes}),
                expired_only=True,
                context=ctx,
            )
        return out
