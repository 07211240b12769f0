"""Lab fault types: what each one accepts and how it becomes a plan, in one registry.

Pure logic: no I/O. :data:`FAULT_TYPES` holds, per fault type, its request validation
(selectors, modes, required fields) and its translation into a :class:`FaultPlan` (the
link-proxy conditions to set and the regions to stop). The supervisor applies plans and
verifies them; verification follows from the plan: each condition is observed as
:data:`CONDITION_CHECKS` says for its condition type, each stopped region by its process
state. Adding a lab fault type is one entry in :data:`FAULT_TYPES` (plus, for a new
link-proxy mechanism, the mechanism in :mod:`chaosaa.lab.proxy` and an entry in
:data:`CONDITION_CHECKS`).

Links are named ``src>dst``: ``router>eu`` carries client traffic to eu, ``us>eu`` carries
us's replication pushes to eu. A link's ``up`` stream flows from ``src`` to ``dst``, its
``down`` stream back. So data *leaving* region X travels on ``X>*`` links ``up`` and on
``*>X`` links ``down``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from chaosaa.durations import parse_duration
from chaosaa.rules.model import NodeFault

ROUTER = "router"
DEFAULT_REPLICATION_THROTTLE = "64kbit"

_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)?$", re.IGNORECASE)
# tc(8) units: "bit" suffixes are bits per second, "bps" suffixes are *bytes* per second.
_RATE_FACTORS = {
    "bit": 1 / 8,
    "kbit": 1000 / 8,
    "mbit": 1_000_000 / 8,
    "gbit": 1_000_000_000 / 8,
    "bps": 1.0,
    "kbps": 1000.0,
    "mbps": 1_000_000.0,
    "gbps": 1_000_000_000.0,
}


def parse_rate(value: str | float | int) -> float:
    """Bytes per second from ``64kbit``, ``1mbit``, ``100kbps`` (tc units) or a number
    (bytes per second)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("rate must be > 0")
        return float(value)
    m = _RATE.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a rate: use e.g. 64kbit, 1mbit, 100kbps")
    rate = float(m.group(1)) * _RATE_FACTORS[(m.group(2) or "bps").lower()]
    if rate <= 0:
        raise ValueError("rate must be > 0")
    return rate


def seconds(value: str | float | int) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("must be >= 0")
        return float(value)
    return parse_duration(str(value))


Selector = Literal["regions", "partition", "links"]


class FaultRequest(BaseModel):
    """Body of ``POST /faults`` on the supervisor (camelCase, unknown fields rejected)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str | None = None
    #: a key of :data:`FAULT_TYPES`
    type: str
    regions: list[str] | None = None
    partition: list[list[str]] | None = None
    links: list[list[str]] | None = None
    direction: Literal["both", "ingress", "egress"] | None = None
    clients: bool | None = None
    delay: str | float | None = None
    jitter: str | float | None = None
    mode: str | None = None
    bandwidth: str | float | None = None
    rate: str | float | None = None
    percent: float | None = Field(default=None, ge=0, le=100)
    ttl: str | float = "10s"

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, v: object) -> object:
        # Worded and typed as pydantic words a Literal mismatch.
        if not isinstance(v, str) or v not in FAULT_TYPES:
            names = [f"'{t}'" for t in FAULT_TYPES]
            expected = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
            raise PydanticCustomError(
                "literal_error", "Input should be {expected}", {"expected": expected}
            )
        return v

    @field_validator("delay", "jitter", "ttl")
    @classmethod
    def _duration(cls, v: str | float | None) -> str | float | None:
        if v is not None:
            seconds(v)
        return v

    @field_validator("bandwidth", "rate")
    @classmethod
    def _rate(cls, v: str | float | None) -> str | float | None:
        if v is not None:
            parse_rate(v)
        return v

    @field_validator("links")
    @classmethod
    def _pairs(cls, v: list[list[str]] | None) -> list[list[str]] | None:
        for pair in v or []:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError("each link is [source, target] with two different regions")
        return v

    @model_validator(mode="after")
    def _shape(self) -> FaultRequest:
        kind = FAULT_TYPES[self.type]
        selectors = [s for s in ("regions", "partition", "links") if getattr(self, s)]
        if len(selectors) != 1:
            raise ValueError("give exactly one of regions, partition, links")
        if selectors[0] not in kind.selectors:
            raise ValueError(f"{self.type} takes {' or '.join(sorted(kind.selectors))}")
        if kind.requires is not None and all(getattr(self, f) is None for f in kind.requires[0]):
            raise ValueError(kind.requires[1])
        if self.ttl_seconds <= 0 or self.ttl_seconds > 3600:
            raise ValueError("ttl must be > 0 and <= 1h")
        if self.mode is not None and self.mode not in kind.modes:
            ok = sorted(kind.modes)
            raise ValueError(
                f"mode for {self.type} must be one of {ok}" if ok else f"{self.type} takes no mode"
            )
        if self.partition is not None:
            if len(self.partition) < 2:
                raise ValueError("partition needs at least two groups")
            seen = [r for g in self.partition for r in g]
            if len(seen) != len(set(seen)):
                raise ValueError("a region appears in two partition groups")
            if self.clients:
                raise ValueError("clients: true is not supported with partition; use regions")
            if self.direction not in (None, "both") and len(self.partition) != 2:
                raise ValueError("direction ingress/egress needs exactly two partition groups")
        return self

    @property
    def ttl_seconds(self) -> float:
        return seconds(self.ttl)

    @property
    def mode_or_default(self) -> str:
        """``mode``, or the fault type's default mode (the first of its modes)."""
        return self.mode or FAULT_TYPES[self.type].modes[0]

    def named_regions(self) -> set[str]:
        out = set(self.regions or [])
        out.update(r for g in self.partition or [] for r in g)
        out.update(r for p in self.links or [] for r in p)
        return out


Targets = dict[str, set[str]]
#: traffic from one region to another: (data source, data target)
Pair = tuple[str, str]


@dataclass(frozen=True)
class Link:
    """A link-proxied path: ``source`` (a region or ``router``) connects to ``target``.

    ``flows`` (replication and write links): whose data moves on it in which stream
    direction, ``(data source, data target, "up" | "down")``."""

    name: str
    source: str
    target: str
    kind: str = "replication"
    flows: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class Topology:
    """What a lab's faults can act on: its regions, its link-proxied paths, and the
    regions that sit in network namespaces (address per region) instead, where faults
    between regions become node rules acting on the system's traffic."""

    regions: tuple[str, ...]
    links: tuple[Link, ...]
    #: region -> its address, for regions in network namespaces
    addresses: Mapping[str, str] = field(default_factory=dict)
    #: the TCP ports replication uses between namespaced regions
    replication_ports: tuple[int, ...] = ()

    @classmethod
    def full_mesh(cls, regions: Sequence[str]) -> Topology:
        """The demo: a client link per region, every region pushing to every other."""
        links = [Link(f"{ROUTER}>{r}", ROUTER, r, "client") for r in regions]
        links += [
            Link(f"{a}>{b}", a, b, "replication", ((a, b, "up"),))
            for a in regions
            for b in regions
            if a != b
        ]
        return cls(tuple(regions), tuple(links))

    @property
    def namespaced(self) -> bool:
        return bool(self.addresses)

    def between(self, a: str, b: str) -> Targets:
        """Every stream carrying traffic from ``a`` to ``b`` (``a`` may be ``router``)."""
        t: Targets = {}
        for link in self.links:
            if (link.source, link.target) == (a, b):
                _add(t, link.name, "up")
            elif (link.source, link.target) == (b, a) and a != ROUTER:
                _add(t, link.name, "down")
        return t

    def replication(self, pairs: Iterable[Pair]) -> Targets:
        """The replication streams carrying the data of each (source, target) pair."""
        wanted = set(pairs)
        t: Targets = {}
        for link in self.links:
            if link.kind == "replication":
                for source, target, direction in link.flows:
                    if (source, target) in wanted:
                        _add(t, link.name, direction)
        return t


@dataclass
class FaultPlan:
    """What a fault does: conditions for the link proxy, node processes to stop, and node
    rules in namespaced regions (``(region, rule)``)."""

    conditions: list[dict[str, Any]] = field(default_factory=list)
    stop_regions: list[str] = field(default_factory=list)
    rules: list[tuple[str, NodeFault]] = field(default_factory=list)


def _add(t: Targets, link: str, direction: str) -> None:
    t.setdefault(link, set()).add(direction)


def _merge(into: Targets, other: Targets) -> None:
    for link, dirs in other.items():
        into.setdefault(link, set()).update(dirs)


def _as_list(t: Targets) -> list[dict[str, str]]:
    out = []
    for link, dirs in sorted(t.items()):
        out.append({"link": link, "dir": "both" if dirs == {"up", "down"} else next(iter(dirs))})
    return out


def plan(req: FaultRequest, topology: Topology | Sequence[str]) -> FaultPlan:
    """Translate a validated request for a lab into a plan (a list of regions stands for
    the demo's full mesh)."""
    topo = topology if isinstance(topology, Topology) else Topology.full_mesh(topology)
    regions = list(topo.regions)
    unknown = req.named_regions() - set(regions)
    if unknown:
        raise ValueError(
            f"unknown region(s) {', '.join(sorted(unknown))}; the lab has {', '.join(regions)}"
        )
    result = FAULT_TYPES[req.type].translate(req, topo)
    if not (result.conditions or result.stop_regions or result.rules):
        if req.type == "replicationLag":
            raise ValueError(
                "the fault selects no link: no replication of this lab's system carries data "
                "from the selected source to the selected target"
            )
        raise ValueError("the fault selects no link")
    return result


# -- what a fault selects ------------------------------------------------------------------
def _pairs_of_region(region: str, regions: Sequence[str], direction: str) -> set[Pair]:
    others = [o for o in regions if o != region]
    out: set[Pair] = set()
    if direction in ("egress", "both"):
        out |= {(region, o) for o in others}
    if direction in ("ingress", "both"):
        out |= {(o, region) for o in others}
    return out


def _client_streams(region: str, direction: str) -> Targets:
    """The client link's streams: requests come ``up`` (ingress), answers go ``down``."""
    t: Targets = {}
    if direction in ("egress", "both"):
        _add(t, f"{ROUTER}>{region}", "down")
    if direction in ("ingress", "both"):
        _add(t, f"{ROUTER}>{region}", "up")
    return t


def _link_pairs(req: FaultRequest, *, both_ways: bool = False) -> set[Pair]:
    pairs = {(a, b) for a, b in req.links or []}
    return pairs | {(b, a) for a, b in pairs} if both_ways else pairs


def _selected(req: FaultRequest, regions: Sequence[str]) -> tuple[set[Pair], Targets]:
    """``links``: data from source to target; ``regions``: data leaving them (by default)
    and, with ``clients``, their client links."""
    if req.links:
        return _link_pairs(req), {}
    direction = req.direction or "egress"
    pairs: set[Pair] = set()
    clients: Targets = {}
    for r in req.regions or []:
        pairs |= _pairs_of_region(r, regions, direction)
        if req.clients:
            _merge(clients, _client_streams(r, direction))
    return pairs, clients


@dataclass(frozen=True)
class _Effect:
    """What a fault does to the traffic it selects: link-proxy conditions, and the node
    rule fields (besides key and peers) that do the same between namespaced regions."""

    conditions: tuple[dict[str, Any], ...]
    node: dict[str, Any] | None
    #: only the system's replication streams (not writes, not clients)
    replication_only: bool = False
    #: why namespaced regions cannot have it (when ``node`` is None)
    unsupported: str = ""


def _realize(
    req: FaultRequest, topo: Topology, pairs: set[Pair], clients: Targets, effect: _Effect
) -> FaultPlan:
    """The plan that applies ``effect`` to the traffic of ``pairs`` (and ``clients``)."""
    streams: Targets = {}
    _merge(streams, clients)
    result = FaultPlan()
    if topo.namespaced and pairs:
        if effect.node is None:
            raise ValueError(f"{req.type}: {effect.unsupported}")
        by_source: dict[str, set[str]] = {}
        for a, b in pairs:
            by_source.setdefault(a, set()).add(topo.addresses[b])
        for region, peers in sorted(by_source.items()):
            key = hashlib.sha256(f"{req.id}\0{region}".encode()).hexdigest()[:12]
            result.rules.append((region, NodeFault(key=key, peers=tuple(peers), **effect.node)))
    elif effect.replication_only:
        _merge(streams, topo.replication(pairs))
    else:
        for a, b in pairs:
            _merge(streams, topo.between(a, b))
    if streams:
        result.conditions = [{**c, "targets": _as_list(streams)} for c in effect.conditions]
    return result


# -- translations: one per fault type ------------------------------------------------------
def _latency_condition(req: FaultRequest) -> dict[str, Any]:
    return {"type": "latency", "delay": seconds(req.delay or 0), "jitter": seconds(req.jitter or 0)}


def _blackhole(req: FaultRequest, topo: Topology) -> FaultPlan:
    regions = topo.regions
    direction = req.direction or "both"
    pairs: set[Pair] = set()
    clients: Targets = {}
    if req.regions:
        cut_clients = True if req.clients is None else req.clients
        for r in req.regions:
            pairs |= _pairs_of_region(r, regions, direction)
            if cut_clients:
                _merge(clients, _client_streams(r, direction))
    elif req.partition:
        groups = req.partition
        for gi, g in enumerate(groups):
            for hj, h in enumerate(groups):
                # With two groups, direction is relative to the first group.
                if gi == hj or (direction == "egress" and gi != 0):
                    continue
                if direction == "ingress" and gi == 0:
                    continue
                pairs |= {(a, b) for a in g for b in h}
    else:
        pairs = _link_pairs(req, both_ways=direction == "both")
    mode = req.mode_or_default
    node = None if mode == "drop" else {"type": "blackhole", "direction": "egress"}
    unsupported = "mode drop (resets) exists only on link proxies; namespaced regions drop packets"
    effect = _Effect(({"type": "blackhole", "mode": mode},), node, unsupported=unsupported)
    return _realize(req, topo, pairs, clients, effect)


_NO_NETEM = "delays between namespaced regions need tc netem"


def _latency(req: FaultRequest, topo: Topology) -> FaultPlan:
    pairs, clients = _selected(req, topo.regions)
    delay, jitter = seconds(req.delay or 0), seconds(req.jitter or 0)
    node = {"type": "latency", "delay": delay, "jitter": jitter}
    return _realize(req, topo, pairs, clients, _Effect((_latency_condition(req),), node))


def _replication_lag(req: FaultRequest, topo: Topology) -> FaultPlan:
    """The system's replication only: held (pause) or throttled, in the direction its data
    flows; never client links or a region's writes to another region's server."""
    if req.links:
        pairs = _link_pairs(req)
    else:
        pairs = {
            pair for r in req.regions or [] for pair in _pairs_of_region(r, topo.regions, "both")
        }
    pause = req.mode_or_default == "pause"
    rate = parse_rate(req.bandwidth or req.rate or DEFAULT_REPLICATION_THROTTLE)
    condition: dict[str, Any] = (
        {"type": "blackhole", "mode": "hang"} if pause else {"type": "bandwidth", "rate": rate}
    )
    conditions = (condition,) if req.delay is None else (condition, _latency_condition(req))
    node: dict[str, Any] | None = {
        "type": "replicationLag",
        "mode": req.mode_or_default,
        "rate": rate * 8,  # node rules take bits/s
        "ports": topo.replication_ports,
    }
    if req.delay is not None:
        node = None
    return _realize(
        req,
        topo,
        pairs,
        {},
        _Effect(conditions, node, replication_only=True, unsupported=_NO_NETEM),
    )


def _region_down(req: FaultRequest, _topo: Topology) -> FaultPlan:
    return FaultPlan(stop_regions=list(req.regions or []))


def _bandwidth(req: FaultRequest, topo: Topology) -> FaultPlan:
    pairs, clients = _selected(req, topo.regions)
    rate = parse_rate(req.rate or req.bandwidth or 0)
    node = {"type": "bandwidth", "rate": rate * 8}
    return _realize(
        req, topo, pairs, clients, _Effect(({"type": "bandwidth", "rate": rate},), node)
    )


def _packet_loss(req: FaultRequest, topo: Topology) -> FaultPlan:
    pairs, clients = _selected(req, topo.regions)
    loss = {"type": "loss", "percent": float(req.percent or 0), "mode": req.mode_or_default}
    node = None
    if req.mode_or_default == "retransmit":
        node = {"type": "packetLoss", "percent": float(req.percent or 0)}
    unsupported = "mode reset exists only on link proxies; namespaced regions drop packets"
    return _realize(req, topo, pairs, clients, _Effect((loss,), node, unsupported=unsupported))


# -- the registry ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FaultType:
    """Everything the lab knows about one fault type."""

    #: the selectors it takes (exactly one of them per request)
    selectors: frozenset[Selector]
    #: a validated request, for a lab with this topology -> what to do
    translate: Callable[[FaultRequest, Topology], FaultPlan]
    #: the values ``mode`` may take, the default first; empty: the type takes no mode
    modes: tuple[str, ...] = ()
    #: (fields of which one must be given, the message when none is)
    requires: tuple[tuple[str, ...], str] | None = None


_REGIONS_OR_LINKS: frozenset[Selector] = frozenset({"regions", "links"})

#: every lab fault type, in the order the API lists them
FAULT_TYPES: dict[str, FaultType] = {
    "blackhole": FaultType(
        frozenset({"regions", "partition", "links"}), _blackhole, modes=("hang", "drop")
    ),
    "latency": FaultType(
        _REGIONS_OR_LINKS, _latency, requires=(("delay",), "latency needs delay (e.g. 200ms)")
    ),
    "replicationLag": FaultType(_REGIONS_OR_LINKS, _replication_lag, modes=("throttle", "pause")),
    "regionDown": FaultType(frozenset({"regions"}), _region_down),
    "bandwidth": FaultType(
        _REGIONS_OR_LINKS,
        _bandwidth,
        requires=(("rate", "bandwidth"), "bandwidth needs rate (e.g. 1mbit)"),
    ),
    "packetLoss": FaultType(
        _REGIONS_OR_LINKS,
        _packet_loss,
        modes=("retransmit", "reset"),
        requires=(("percent",), "packetLoss needs percent"),
    ),
}


# -- verification of link-proxy conditions --------------------------------------------------
Probe = Literal["cut", "delay"]


@dataclass(frozen=True)
class ConditionCheck:
    """How verification observes one link-proxy condition type (besides the proxy's own
    read-back, which every condition gets)."""

    #: whether a link direction's state (proxy ``GET /links``) still shows this type
    shows: Callable[[Mapping[str, Any]], bool]
    #: what a probe through each target link must see while it is in effect: ``cut`` (no
    #: answer, or a reset), ``delay`` (no answer before the delay); None: read-back only
    #: (a rate or a probability takes far longer than the budget to observe)
    probe: Probe | None = None


#: every condition type a plan may contain
CONDITION_CHECKS: dict[str, ConditionCheck] = {
    "blackhole": ConditionCheck(lambda st: st.get("blackhole") is not None, probe="cut"),
    "latency": ConditionCheck(lambda st: bool(st.get("delay") or st.get("jitter")), probe="delay"),
    "bandwidth": ConditionCheck(lambda st: bool(st.get("rate"))),
    "loss": ConditionCheck(lambda st: bool(st.get("loss"))),
}


def resets_connections(cond: Mapping[str, Any]) -> bool:
    """A planned condition that resets connections rather than holding them."""
    return cond["type"] == "blackhole" and cond.get("mode") == "drop"
