"""The regions of a GameDay as the kubernetes target reaches them: what its handlers share.

A region is a kube context and namespaces in it. Several regions may share a context; their
nodes are then told apart by the ``topology.kubernetes.io/region`` label. A region's
addresses (its nodes' InternalIP/ExternalIP, their pod CIDRs and the node annotation
``chaosaa.io/addresses``) are where its traffic comes from: node rules and NetworkPolicies
cut or shape traffic by them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from chaosaa.errors import InvalidInputError, TargetUnreachableError
from chaosaa.kube import Client, meta, selector
from chaosaa.rules import resource as nf
from chaosaa.rules.model import is_always_local
from chaosaa.spec.faults import FaultBase, FaultScope
from chaosaa.spec.model import Target as TargetSpec

log = logging.getLogger(__name__)

LABEL_REGION = "topology.kubernetes.io/region"
#: on a Node: extra CIDRs its region's traffic comes from (e.g. NAT gateway addresses)
ANN_ADDRESSES = "chaosaa.io/addresses"
ENV_REPLICATION_PORTS = "CHAOSAA_REPLICATION_PORTS"


@dataclass
class Region:
    """One region as reached: its context, namespaces, API client and nodes."""

    name: str
    context: str
    namespaces: list[str]
    kube: Client
    #: the context serves more than one region: nodes are told apart by region label
    shared: bool = False
    nodes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lease_namespace(self) -> str:
        return self.namespaces[0] if self.namespaces else "default"

    @property
    def node_names(self) -> list[str]:
        return [meta(n)["name"] for n in self.nodes]

    async def load_nodes(self) -> list[dict[str, Any]]:
        only = f"{LABEL_REGION}={self.name}" if self.shared else None
        body = await self.kube.call(self.kube.core.list_node, label_selector=only)
        self.nodes = list(body.get("items") or [])
        return self.nodes


class Regions:
    """Every region of the target, reached once ``open`` has been given the clients."""

    def __init__(self, spec: TargetSpec, run_id: str) -> None:
        self.spec = spec
        self.run_id = run_id
        self._regions: dict[str, Region] = {}

    # -- before open: from the GameDay ----------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.spec.regions)

    def context(self, name: str) -> str:
        return str(self.spec.regions[name].context)

    def namespaces(self, name: str) -> list[str]:
        return self.spec.regions[name].all_namespaces()

    def contexts(self) -> list[str]:
        return sorted({str(r.context) for r in self.spec.regions.values() if r.context})

    # -- once open ------------------------------------------------------------------------
    def open(self, clients: Mapping[str, Client]) -> None:
        users: dict[str, int] = {}
        for name in self.names:
            users[self.context(name)] = users.get(self.context(name), 0) + 1
        self._regions = {
            name: Region(
                name=name,
                context=self.context(name),
                namespaces=self.namespaces(name),
                kube=clients[self.context(name)],
                shared=users[self.context(name)] > 1,
            )
            for name in self.names
        }

    @property
    def is_open(self) -> bool:
        return bool(self._regions)

    def close(self) -> None:
        """Drop the connections (a later call opens new ones)."""
        for region in self.by_context().values():
            region.kube.close()

    def __getitem__(self, name: str) -> Region:
        try:
            return self._regions[name]
        except KeyError:
            raise TargetUnreachableError("kubernetes target is not open") from None

    def __iter__(self) -> Iterator[Region]:
        return iter(self._regions.values())

    def by_context(self) -> dict[str, Region]:
        """One region per context (the first): for cluster-wide calls."""
        out: dict[str, Region] = {}
        for r in self._regions.values():
            out.setdefault(r.context, r)
        return out

    async def addresses(self) -> dict[str, list[str]]:
        """Every region's CIDRs (nodes are listed where not known yet)."""
        await asyncio.gather(*(r.load_nodes() for r in self if not r.nodes))
        return {r.name: region_addresses(r.nodes) for r in self}

    # -- what a fault's artefacts are labelled with ---------------------------------------
    def labels(self, fault: FaultBase) -> dict[str, str]:
        return {
            nf.LABEL_RUN: nf.label_value(self.run_id),
            nf.LABEL_FAULT: nf.label_value(fault.name),
        }

    def selector(self, fault: FaultBase) -> str:
        """The label selector of everything this run created for ``fault``."""
        return selector(self.labels(fault))


def named_regions(scope: FaultScope) -> list[str]:
    """The regions a scope names, in order."""
    named = [*scope.regions, *(r for group in scope.partition for r in group)]
    named += [r for link in scope.links for r in link]
    return list(dict.fromkeys(named))


def region_addresses(nodes: Iterable[Mapping[str, Any]]) -> list[str]:
    """CIDRs a region's traffic comes from: node addresses, pod CIDRs, annotated extras."""
    out: list[str] = []
    for node in nodes:
        status = node.get("status") or {}
        for addr in status.get("addresses") or []:
            if addr.get("type") in ("InternalIP", "ExternalIP"):
                out.append(addr["address"])
        spec = node.get("spec") or {}
        out += spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
        extra = (meta(node).get("annotations") or {}).get(ANN_ADDRESSES, "")
        out += [c.strip() for c in extra.split(",") if c.strip()]
    valid = []
    for c in out:
        try:
            net = ipaddress.ip_network(c, strict=False)
        except ValueError:
            log.warning("ignoring %r: not an address or CIDR", c)
            continue
        if not is_always_local(str(net)):
            valid.append(str(net))
    return sorted(set(valid))


def replication_ports() -> tuple[int, ...]:
    """``CHAOSAA_REPLICATION_PORTS``: the ports replicationLag acts on."""
    raw = os.environ.get(ENV_REPLICATION_PORTS, "")
    try:
        return tuple(int(p) for p in raw.replace(",", " ").split())
    except ValueError:
        raise InvalidInputError(
            f"{ENV_REPLICATION_PORTS}={raw!r}: give TCP ports, e.g. '5432' or '5432,6379'"
        ) from None
