"""blackhole on the Kubernetes API: a NetworkPolicy in every namespace of the cut regions.

Each policy selects every pod of its namespace (``podSelector: {}``). A region cut off
with its clients (``regions``, the default): its namespaces only talk among themselves and
to DNS in ``kube-system``. Otherwise (a ``partition``, or ``clients: false``): everything
is allowed except the other side's addresses (``ipBlock.except``). Only chaosaa's own
policies (``app.kubernetes.io/managed-by=chaosaa``) are ever touched. A NetworkPolicy only
works with a CNI that enforces it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from chaosaa.errors import FaultError
from chaosaa.kube import ApiError, ConflictError, NotFoundError, meta
from chaosaa.rules import resource as nf
from chaosaa.spec.faults import BlackholeFault
from chaosaa.targets.kubernetes.mechanism import Mechanism, problems, settle
from chaosaa.targets.kubernetes.regions import ANN_ADDRESSES, Region, named_regions

DNS = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
POLICY_TYPES = {"both": ["Ingress", "Egress"], "ingress": ["Ingress"], "egress": ["Egress"]}


class PolicyRef(NamedTuple):
    region: str
    namespace: str
    name: str


@dataclass
class PolicyState:
    """The NetworkPolicies created, and those read back in place."""

    policies: list[PolicyRef] = field(default_factory=list)
    policies_seen: set[PolicyRef] = field(default_factory=set)


def _dark_region(fault: BlackholeFault) -> bool:
    """A region cut off from everything, its clients too."""
    return fault.regions is not None and fault.cuts_clients


class NetworkPolicies(Mechanism[BlackholeFault, PolicyState]):
    def touched(self, fault: BlackholeFault) -> list[str]:
        return named_regions(fault.scope())

    def planned(self, fault: BlackholeFault) -> list[tuple[str, str]]:
        return [
            (f"namespace {ns}@{self.regions.context(r)}", "NetworkPolicy")
            for r in self.touched(fault)
            for ns in self.regions.namespaces(r)
        ]

    async def _far_side(self, fault: BlackholeFault) -> dict[str, list[str]]:
        """Per cut region: the CIDRs of the other side."""
        if _dark_region(fault):
            return {}
        addrs = await self.regions.addresses()
        scope = fault.scope()
        groups = [[r] for r in scope.regions] or [list(g) for g in scope.partition]
        out: dict[str, list[str]] = {}
        for gi, group in enumerate(groups):
            others = (
                [r for r in addrs if r not in group]
                if scope.regions
                else [r for gj, g in enumerate(groups) if gj != gi for r in g]
            )
            far = sorted({c for o in others for c in addrs[o]})
            for r in group:
                mine = set(addrs[r])
                out[r] = [c for c in far if c not in mine]
                if not out[r] and self.regions[r].namespaces:
                    raise FaultError(
                        f"fault {fault.name!r}: no addresses known for the regions region "
                        f"{r} must be cut from; NetworkPolicy needs them (node InternalIPs, "
                        f"pod CIDRs, or the node annotation {ANN_ADDRESSES})"
                    )
        return out

    def _policy(
        self, fault: BlackholeFault, region: Region, ns: str, far: Sequence[str], expires: str
    ) -> dict[str, Any]:
        types = POLICY_TYPES[fault.direction]
        peers: list[dict[str, Any]]
        if _dark_region(fault):
            # its namespaces still talk among themselves (and to DNS)
            peers = [
                {
                    "namespaceSelector": {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/metadata.name",
                                "operator": "In",
                                "values": list(region.namespaces),
                            }
                        ]
                    }
                }
            ]
            ingress, egress = [{"from": peers}], [{"to": peers}, DNS]
        else:
            v4 = [c for c in far if ":" not in c]
            v6 = [c for c in far if ":" in c]
            peers = [
                {"namespaceSelector": {}},
                {"ipBlock": {"cidr": "0.0.0.0/0", **({"except": v4} if v4 else {})}},
                {"ipBlock": {"cidr": "::/0", **({"except": v6} if v6 else {})}},
            ]
            ingress, egress = [{"from": peers}], [{"to": peers}]
        spec: dict[str, Any] = {"podSelector": {}, "policyTypes": types}
        if "Ingress" in types:
            spec["ingress"] = ingress
        if "Egress" in types:
            spec["egress"] = egress
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": nf.object_name("chaosaa", fault.name, nf.label_value(self.regions.run_id)),
                "namespace": ns,
                "labels": {nf.LABEL_MANAGED_BY: nf.MANAGED_BY, **self.regions.labels(fault)},
                "annotations": {nf.ANN_EXPIRES: expires, nf.ANN_RUN: self.regions.run_id},
            },
            "spec": spec,
        }

    async def apply(self, fault: BlackholeFault, state: PolicyState, ttl: float) -> None:
        expires = nf.format_time(time.time() + ttl)
        far_side = await self._far_side(fault)

        async def create(region: Region, ns: str) -> None:
            body = self._policy(fault, region, ns, far_side.get(region.name, []), expires)
            kube, name = region.kube, body["metadata"]["name"]
            net = kube.networking
            try:
                await kube.call(net.create_namespaced_network_policy, ns, body)
            except ConflictError:
                await kube.call(net.replace_namespaced_network_policy, name, ns, body)
            except ApiError as exc:
                raise FaultError(f"NetworkPolicy {ns}/{name} in {region.context}: {exc}") from exc
            state.policies.append(PolicyRef(region.name, ns, name))

        touched = [self.regions[r] for r in self.touched(fault)]
        await asyncio.gather(*(create(r, ns) for r in touched for ns in r.namespaces))

    async def verify(self, fault: BlackholeFault, state: PolicyState, pending: list[str]) -> bool:
        async def present(p: PolicyRef) -> bool:
            kube = self.regions[p.region].kube
            try:
                await kube.call(kube.networking.read_namespaced_network_policy, p.name, p.namespace)
            except NotFoundError:
                return False
            return True

        todo = [p for p in state.policies if p not in state.policies_seen]
        found = await asyncio.gather(*(present(p) for p in todo))
        state.policies_seen.update(p for p, ok in zip(todo, found, strict=True) if ok)
        pending += [
            f"{p.region}/NetworkPolicy/{p.namespace}/{p.name}: not found"
            for p, ok in zip(todo, found, strict=True)
            if not ok
        ]
        return len(state.policies_seen) == len(state.policies)

    async def renew(self, fault: BlackholeFault, state: PolicyState, ttl: float) -> None:
        body = {"metadata": {"annotations": {nf.ANN_EXPIRES: nf.format_time(time.time() + ttl)}}}
        calls = []
        for p in state.policies:
            kube = self.regions[p.region].kube
            calls.append(
                kube.call(
                    kube.networking.patch_namespaced_network_policy, p.name, p.namespace, body
                )
            )
        if errors := await settle(calls):
            raise errors[0]

    async def revert(self, fault: BlackholeFault, state: PolicyState) -> list[str]:
        labels = self.regions.selector(fault)

        async def delete(region: Region) -> None:
            kube = region.kube
            await asyncio.gather(
                *(
                    kube.call(
                        kube.networking.delete_collection_namespaced_network_policy,
                        ns,
                        label_selector=labels,
                    )
                    for ns in region.namespaces
                )
            )

        return await problems(delete(self.regions[r]) for r in self.touched(fault))

    async def verify_reverted(
        self, fault: BlackholeFault, state: PolicyState, pending: list[str]
    ) -> bool:
        labels = self.regions.selector(fault)
        lists = await asyncio.gather(
            *(
                r.kube.call(
                    r.kube.networking.list_namespaced_network_policy, ns, label_selector=labels
                )
                for r in (self.regions[name] for name in self.touched(fault))
                for ns in r.namespaces
            )
        )
        left = [
            f"NetworkPolicy {meta(p).get('name')}: still marked"
            for body in lists
            for p in body.get("items") or []
        ]
        pending += left
        return not left
