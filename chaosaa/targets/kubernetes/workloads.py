"""regionDown: every Deployment and StatefulSet of the region scaled to 0, its nodes cordoned.

Each workload is scaled in one JSON patch guarded by a ``test`` of the replica count that
was read, which also records it in ``chaosaa.io/replicas-before``: revert (and the janitor,
and ``chaosaa rollback``) restores the exact count from the object itself. Workloads
already at 0 are left alone; a node someone else cordoned is not marked, so chaosaa never
uncordons it. The fault is in effect once no pod of a scaled workload is left that is not
being deleted (a pod being deleted has left the Service's endpoints) and the nodes read
back cordoned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from chaosaa.errors import FaultError
from chaosaa.kube import (
    JSON_PATCH,
    METADATA_ONLY,
    ApiError,
    ConflictError,
    InvalidError,
    NotFoundError,
    meta,
)
from chaosaa.kube.janitor import list_workloads, restore_workload, uncordon
from chaosaa.kube.objects import add_map_entries, workload_selector
from chaosaa.rules import resource as nf
from chaosaa.spec.faults import RegionDownFault
from chaosaa.targets.kubernetes.mechanism import Mechanism, problems, settle
from chaosaa.targets.kubernetes.regions import Region

#: a patch refused because the object changed is tried again on a fresh read, this often
ATTEMPTS = 5


class ScaledWorkload(NamedTuple):
    region: str
    kind: str
    namespace: str
    name: str
    #: the replica count it had: revert restores exactly this
    replicas: int
    #: the label selector of its pods (None: it selects none)
    pods: str | None

    @property
    def key(self) -> str:
        return f"{self.region}/{self.kind}/{self.namespace}/{self.name}"


class CordonedNode(NamedTuple):
    region: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.region}/node/{self.name}"


@dataclass
class RegionDownState:
    """What was scaled down and cordoned, and what verify has seen done."""

    workloads: list[ScaledWorkload] = field(default_factory=list)
    nodes: list[CordonedNode] = field(default_factory=list)
    #: keys seen done: they stay done (replicas stay 0, nobody uncordons), so each poll
    #: only asks about the rest
    down: set[str] = field(default_factory=set)


class ScaleDown(Mechanism[RegionDownFault, RegionDownState]):
    """Scale every workload of the regions' namespaces to 0 and cordon their nodes."""

    def touched(self, fault: RegionDownFault) -> list[str]:
        return list(fault.regions)

    def planned(self, fault: RegionDownFault) -> list[tuple[str, str]]:
        out = []
        for r in self.touched(fault):
            ctx = self.regions.context(r)
            out += [
                (
                    f"namespace {ns}@{ctx}",
                    "scale every Deployment/StatefulSet to 0; exact replicas restored",
                )
                for ns in self.regions.namespaces(r)
            ]
            out.append((f"nodes of region {r} (context {ctx})", "cordon"))
        return out

    def _marks(self, ttl: float) -> dict[str, str]:
        return {nf.ANN_EXPIRES: nf.format_time(time.time() + ttl), nf.ANN_RUN: self.regions.run_id}

    async def apply(self, fault: RegionDownFault, state: RegionDownState, ttl: float) -> None:
        labels, marks = self.regions.labels(fault), self._marks(ttl)

        async def one_region(region: Region) -> None:
            found = await list_workloads(region.kube, region.namespaces, "")
            scaled = await asyncio.gather(
                *(self._scale(region, kind, obj, labels, marks) for kind, obj in found)
            )
            state.workloads += [w for w in scaled if w is not None]
            if not region.nodes:
                await region.load_nodes()
            cordoned = await asyncio.gather(
                *(self._cordon(region, node, labels, marks) for node in region.nodes)
            )
            state.nodes += [n for n in cordoned if n is not None]

        await asyncio.gather(*(one_region(self.regions[r]) for r in fault.regions))

    async def _scale(
        self,
        region: Region,
        kind: str,
        obj: Mapping[str, Any],
        labels: Mapping[str, str],
        marks: Mapping[str, str],
    ) -> ScaledWorkload | None:
        kube, m = region.kube, meta(obj)
        ns, name = m["namespace"], m["name"]
        pods = workload_selector((obj.get("spec") or {}).get("selector"))
        calls = kube.workload(kind)
        for _ in range(ATTEMPTS):
            replicas = (obj.get("spec") or {}).get("replicas")
            if replicas is None:
                return None  # not a scalable workload spec
            # An earlier, crashed run's record is the true original: keep it.
            before = int((m.get("annotations") or {}).get(nf.ANN_REPLICAS, replicas))
            if before == 0:
                return None
            # A JSON patch whose `test` guards the replica count we read: status updates
            # by the controllers (which change resourceVersion all the time) do not
            # conflict, a concurrent scale does.
            patch = [
                {"op": "test", "path": "/spec/replicas", "value": replicas},
                *add_map_entries("/metadata/labels", m.get("labels"), labels),
                *add_map_entries(
                    "/metadata/annotations",
                    m.get("annotations"),
                    {nf.ANN_REPLICAS: str(before), **marks},
                ),
                {"op": "replace", "path": "/spec/replicas", "value": 0},
            ]
            try:
                await kube.call(calls.patch, name, ns, patch, _content_type=JSON_PATCH)
                return ScaledWorkload(region.name, kind, ns, name, before, pods)
            except NotFoundError:
                return None
            except (ConflictError, InvalidError):
                pass
            except ApiError as exc:
                raise FaultError(f"{kind} {ns}/{name} in {region.context}: {exc}") from exc
            try:
                obj = await kube.call(calls.read, name, ns)
            except NotFoundError:
                return None
            m = meta(obj)
        raise FaultError(f"{kind} {ns}/{name}: kept changing while being scaled down")

    async def _cordon(
        self,
        region: Region,
        node: Mapping[str, Any],
        labels: Mapping[str, str],
        marks: Mapping[str, str],
    ) -> CordonedNode | None:
        kube, m = region.kube, meta(node)
        for _ in range(ATTEMPTS):
            spec = node.get("spec") or {}
            if spec.get("unschedulable"):
                return None  # cordoned by someone else: not ours to uncordon
            # guarded like the scale-down; kwok/kubelet heartbeats must not conflict
            guard = (
                [{"op": "test", "path": "/spec/unschedulable", "value": False}]
                if "unschedulable" in spec
                else []
            )
            patch = [
                *guard,
                *add_map_entries("/metadata/labels", m.get("labels"), labels),
                *add_map_entries(
                    "/metadata/annotations",
                    m.get("annotations"),
                    {nf.ANN_CORDONED: "true", **marks},
                ),
                {"op": "add", "path": "/spec/unschedulable", "value": True},
            ]
            try:
                await kube.call(kube.core.patch_node, m["name"], patch, _content_type=JSON_PATCH)
                return CordonedNode(region.name, str(m["name"]))
            except NotFoundError:
                return None
            except (ConflictError, InvalidError):
                pass
            except ApiError as exc:
                raise FaultError(f"node {m['name']}: cordon failed: {exc}") from exc
            node = await kube.call(kube.core.read_node, m["name"])
            m = meta(node)
        raise FaultError(f"node {m['name']}: kept changing while being cordoned")

    async def verify(
        self, fault: RegionDownFault, state: RegionDownState, pending: list[str]
    ) -> bool:
        """No pod of any scaled workload still serving; the nodes read back cordoned."""

        async def workload_down(w: ScaledWorkload) -> None:
            if w.pods is not None:
                kube = self.regions[w.region].kube
                pods = await kube.call(
                    kube.core.list_namespaced_pod,
                    w.namespace,
                    label_selector=w.pods,
                    _headers=METADATA_ONLY,
                )
                serving = [
                    p for p in pods.get("items") or [] if not meta(p).get("deletionTimestamp")
                ]
                if serving:
                    hint = (
                        " (an OrderedReady StatefulSet may not scale down while its "
                        "pods are not Ready)"
                        if w.kind == "StatefulSet"
                        else ""
                    )
                    pending.append(f"{w.key}: {len(serving)} pod(s) not being deleted{hint}")
                    return
            state.down.add(w.key)

        async def cordoned(n: CordonedNode) -> None:
            kube = self.regions[n.region].kube
            node = await kube.call(kube.core.read_node, n.name)
            if (node.get("spec") or {}).get("unschedulable"):
                state.down.add(n.key)
            else:
                pending.append(f"{n.key}: not cordoned")

        await asyncio.gather(
            *(workload_down(w) for w in state.workloads if w.key not in state.down),
            *(cordoned(n) for n in state.nodes if n.key not in state.down),
        )
        return len(state.down) >= len(state.workloads) + len(state.nodes)

    async def renew(self, fault: RegionDownFault, state: RegionDownState, ttl: float) -> None:
        body = {"metadata": {"annotations": {nf.ANN_EXPIRES: nf.format_time(time.time() + ttl)}}}
        calls = []
        for w in state.workloads:
            kube = self.regions[w.region].kube
            calls.append(kube.call(kube.workload(w.kind).patch, w.name, w.namespace, body))
        for n in state.nodes:
            kube = self.regions[n.region].kube
            calls.append(kube.call(kube.core.patch_node, n.name, body))
        if errors := await settle(calls):
            raise errors[0]

    @staticmethod
    async def _marked(
        region: Region, labels: str
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
        """The workloads and nodes of the region that carry a fault's labels."""
        kube = region.kube
        found, nodes = await asyncio.gather(
            list_workloads(kube, region.namespaces, labels),
            kube.call(kube.core.list_node, label_selector=labels),
        )
        return found, list(nodes.get("items") or [])

    async def revert(self, fault: RegionDownFault, state: RegionDownState) -> list[str]:
        labels = self.regions.selector(fault)

        async def restore(region: Region) -> None:
            found, nodes = await self._marked(region, labels)
            await asyncio.gather(
                *(restore_workload(region.kube, kind, obj) for kind, obj in found),
                *(uncordon(region.kube, node) for node in nodes),
            )

        return await problems(restore(self.regions[r]) for r in fault.regions)

    async def verify_reverted(
        self, fault: RegionDownFault, state: RegionDownState, pending: list[str]
    ) -> bool:
        """Nothing marked any more, and the exact replica counts are back."""
        labels = self.regions.selector(fault)

        async def marked(region: Region) -> list[str]:
            found, nodes = await self._marked(region, labels)
            return [f"{kind} {meta(obj).get('name')}: still marked" for kind, obj in found] + [
                f"node {meta(node).get('name')}: still marked" for node in nodes
            ]

        found = await asyncio.gather(*(marked(self.regions[r]) for r in fault.regions))
        if left := [line for lines in found for line in lines]:
            pending += left
            return False
        for w in state.workloads:  # read from the objects themselves
            kube = self.regions[w.region].kube
            try:
                obj = await kube.call(kube.workload(w.kind).read, w.name, w.namespace)
            except NotFoundError:
                continue
            have = (obj.get("spec") or {}).get("replicas")
            if have != w.replicas:
                pending.append(f"{w.key}: {have} of {w.replicas} replicas")
                return False
        return True
