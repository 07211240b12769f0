"""Node rules through the chaosaa node agent: one ``NetworkFault`` per node that acts.

Where the rules go comes from :func:`chaosaa.rules.model.node_faults` (one NodeFault per
acting region); each node of that region gets a NetworkFault (cluster-scoped, named after
the fault's key and the node) that its agent turns into nft/tc rules, reports ``Applied``
(or ``Failed``), and reverts when the object is deleted or its ``expiresAt`` lapses. The
agents' heartbeat Leases say beforehand which nodes have one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from chaosaa.errors import FaultError, InvalidInputError
from chaosaa.kube import ApiError, ForbiddenError, NotFoundError, meta, parse_micro_time
from chaosaa.kube.janitor import list_network_faults, release_stuck_network_faults
from chaosaa.rules import resource as nf
from chaosaa.rules.model import NodeFault, node_faults
from chaosaa.spec.faults import FaultBase
from chaosaa.targets.kubernetes.mechanism import Mechanism, problems, settle
from chaosaa.targets.kubernetes.regions import Region, Regions

log = logging.getLogger(__name__)

ENV_AGENT_NAMESPACE = "CHAOSAA_NAMESPACE"
#: how long rollback waits for agents to confirm that NetworkFaults are gone
AGENT_WAIT = 5.0
#: the kube-apiserver's port: node rules never cut it, or a runner (the operator in a hub
#: cluster) loses the API of the very region it must revert
API_SERVER_PORT = 6443
ENV_ALLOW_PORTS = "CHAOSAA_ALLOW_PORTS"


def allow_ports() -> tuple[int, ...]:
    """Ports node rules never touch: the API server's and ``CHAOSAA_ALLOW_PORTS``."""
    raw = os.environ.get(ENV_ALLOW_PORTS, "")
    try:
        extra = tuple(int(p) for p in raw.replace(",", " ").split())
    except ValueError:
        raise InvalidInputError(
            f"{ENV_ALLOW_PORTS}={raw!r}: give TCP ports, e.g. '9100' or '9100,30900'"
        ) from None
    bad = [p for p in extra if not 0 < p < 65536]
    if bad:
        raise InvalidInputError(f"{ENV_ALLOW_PORTS}={raw!r}: {bad[0]} is not a TCP port")
    return tuple(dict.fromkeys((API_SERVER_PORT, *extra)))


def agent_namespace() -> str:
    return os.environ.get(ENV_AGENT_NAMESPACE) or nf.AGENT_NAMESPACE


class NetworkFaultRef(NamedTuple):
    region: str
    name: str


@dataclass
class NetworkFaultState:
    """The NetworkFaults created."""

    network_faults: list[NetworkFaultRef] = field(default_factory=list)


class NetworkFaults(Mechanism[FaultBase, NetworkFaultState]):
    """A fault as NetworkFault objects, one per node of every region whose nodes act.

    ``required``: without an agent on every node of those regions, the fault fails
    (otherwise the mechanism does nothing). ``ports``: the replication ports.
    """

    def __init__(
        self,
        regions: Regions,
        tool: str,
        *,
        required: bool = True,
        ports: Callable[[], Sequence[int]] = tuple,
    ) -> None:
        super().__init__(regions)
        self.tool = tool
        self.required = required
        self.ports = ports

    def touched(self, fault: FaultBase) -> list[str]:
        """Where node_faults places rules of a link fault: the links' sources."""
        return list(dict.fromkeys(a for a, _ in fault.scope().directed_links(self.regions.names)))

    def planned(self, fault: FaultBase) -> list[tuple[str, str]]:
        how = f"{self.tool}: a NetworkFault per node, applied by the chaosaa agent"
        if not self.required:
            how += ", only where every node of the region runs one"
        return [
            (f"nodes of region {r} (context {self.regions.context(r)})", how)
            for r in self.touched(fault)
        ]

    async def apply(self, fault: FaultBase, state: NetworkFaultState, ttl: float) -> None:
        addresses = await self.regions.addresses()
        try:
            per_region = node_faults(
                fault,
                addresses,
                run_id=self.regions.run_id,
                replication_ports=self.ports(),
                allow_ports=allow_ports(),
            )
        except InvalidInputError as exc:
            if not self.required:
                log.info("fault %s: no node rules: %s", fault.name, exc)
                return
            raise FaultError(str(exc)) from exc
        if not await self._agents_everywhere(fault, list(per_region)):
            return
        now = time.time()

        async def create(region: Region, node: str, node_fault: NodeFault) -> None:
            body = nf.network_fault(
                node_fault,
                node=node,
                run_id=self.regions.run_id,
                fault_name=fault.name,
                ttl=ttl,
                now=now,
            )
            kube = region.kube
            try:
                await kube.call(
                    kube.custom.create_cluster_custom_object, nf.GROUP, nf.VERSION, nf.PLURAL, body
                )
            except NotFoundError as exc:
                raise FaultError(
                    f"the NetworkFault CRD is not installed in context {region.context} "
                    "(`chaosaa crd render | kubectl apply -f -`)"
                ) from exc
            except ApiError as exc:
                raise FaultError(f"NetworkFault for node {node}: {exc}") from exc
            state.network_faults.append(NetworkFaultRef(region.name, body["metadata"]["name"]))

        await asyncio.gather(
            *(
                create(self.regions[r], node, node_fault)
                for r, node_fault in per_region.items()
                for node in self.regions[r].node_names
            )
        )

    async def _agents_everywhere(self, fault: FaultBase, acting: list[str]) -> bool:
        """Whether every node of the acting regions runs an agent (else: fail or skip)."""
        alive = await asyncio.gather(*(agents(self.regions[r]) for r in acting))
        missing = {
            r: [n for n in self.regions[r].node_names if n not in up]
            for r, up in zip(acting, alive, strict=True)
        }
        if not any(missing.values()):
            return True
        if not self.required:
            log.warning(
                "fault %s: node rules skipped, no agent on %s: NetworkPolicy only "
                "(new connections refused, established ones may go on)",
                fault.name,
                missing,
            )
            return False
        where = "; ".join(f"region {r}: {', '.join(n)}" for r, n in missing.items() if n)
        raise FaultError(
            f"fault {fault.name!r} needs the chaosaa agent on every node; none runs on "
            f"{where} (install the agent DaemonSet; its heartbeat Leases live in "
            f"namespace {agent_namespace()})"
        )

    async def _listed(self, fault: FaultBase) -> list[dict[str, Any]]:
        """The fault's NetworkFaults, in every context."""
        labels = self.regions.selector(fault)
        lists = await asyncio.gather(
            *(list_network_faults(r.kube, labels) for r in self.regions.by_context().values())
        )
        return [item for items in lists for item in items]

    async def verify(self, fault: FaultBase, state: NetworkFaultState, pending: list[str]) -> bool:
        if not state.network_faults:
            return True
        seen = {meta(item)["name"]: item for item in await self._listed(fault)}
        waiting: list[str] = []
        for name in {ref.name for ref in state.network_faults}:
            found = seen.get(name)
            if found is None:
                raise FaultError(f"NetworkFault {name} disappeared before it took effect")
            status, node = found.get("status") or {}, (found.get("spec") or {}).get("node")
            if status.get("phase") == nf.PHASE_FAILED:
                raise FaultError(
                    f"fault {fault.name!r} failed on node {node}: {status.get('message')}"
                )
            if status.get("phase") != nf.PHASE_APPLIED:
                waiting.append(
                    f"NetworkFault {name}: phase {status.get('phase') or 'unset'}; "
                    f"is the chaosaa agent running on node {node}?"
                )
        pending += waiting
        return not waiting

    async def renew(self, fault: FaultBase, state: NetworkFaultState, ttl: float) -> None:
        body = nf.renewal(ttl, time.time())

        async def one(ref: NetworkFaultRef) -> None:
            kube = self.regions[ref.region].kube
            obj = await kube.call(
                kube.custom.patch_cluster_custom_object,
                nf.GROUP,
                nf.VERSION,
                nf.PLURAL,
                ref.name,
                body,
            )
            status = (obj or {}).get("status") or {}
            if status.get("phase") == nf.PHASE_REVERTED:
                raise FaultError(
                    f"NetworkFault {ref.name} was reverted by its agent: {status.get('message')}"
                )

        if errors := await settle(one(ref) for ref in state.network_faults):
            raise errors[0]

    async def revert(self, fault: FaultBase, state: NetworkFaultState) -> list[str]:
        labels = self.regions.selector(fault)

        async def delete(region: Region) -> None:
            kube = region.kube
            with contextlib.suppress(NotFoundError):  # no CRD: there is nothing to delete
                await kube.call(
                    kube.custom.delete_collection_cluster_custom_object,
                    nf.GROUP,
                    nf.VERSION,
                    nf.PLURAL,
                    label_selector=labels,
                )

        return await problems(delete(r) for r in self.regions.by_context().values())

    async def verify_reverted(
        self, fault: FaultBase, state: NetworkFaultState, pending: list[str]
    ) -> bool:
        if not state.network_faults:
            return True
        left = [
            f"NetworkFault {meta(i).get('name')}: still there" for i in await self._listed(fault)
        ]
        pending += left
        return not left


async def agents(region: Region) -> set[str]:
    """The nodes whose agent heartbeat Lease is current."""
    kube = region.kube
    try:
        body = await kube.call(kube.coordination.list_namespaced_lease, agent_namespace())
    except (ForbiddenError, NotFoundError):
        return set()
    now = time.time()
    alive = set()
    for lease in body.get("items") or []:
        spec = lease.get("spec") or {}
        renewed = parse_micro_time(spec.get("renewTime"))
        if renewed is None or not meta(lease)["name"].startswith(nf.AGENT_LEASE_PREFIX):
            continue
        if renewed + float(spec.get("leaseDurationSeconds") or 0) > now:
            alive.add(str(spec.get("holderIdentity") or ""))
    return alive


async def release_unanswered(region: Region, wait: float = AGENT_WAIT) -> list[str]:
    """After NetworkFaults were deleted: give their agents ``wait`` s to revert and drop
    the finalizer, then remove the finalizer of those no agent answered for."""
    deadline = time.monotonic() + wait
    while True:
        items = await list_network_faults(region.kube, nf.LABEL_RUN)
        stuck = [meta(i)["name"] for i in items if meta(i).get("deletionTimestamp")]
        if not stuck or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    return await release_stuck_network_faults(region.kube, stuck) if stuck else []
