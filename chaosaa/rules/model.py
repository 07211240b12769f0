"""What one node must do for one fault, and where each GameDay fault puts it.

A :class:`NodeFault` is the transport-independent description of a node-level fault: the
fault type, the far side of the affected links (``peers``, as CIDRs) or "everything but
the own region", and the fault's parameters. It is what the kubernetes target writes into
a ``NetworkFault`` object's spec, what the node agent reads back, and what the kind target
turns into commands for a node container. :func:`node_faults` expands a GameDay fault into
one NodeFault per region whose nodes must act.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, cast, get_args

from chaosaa.errors import InvalidInputError
from chaosaa.spec.faults import (
    BandwidthFault,
    BlackholeFault,
    FaultBase,
    LatencyFault,
    PacketLossFault,
    ReplicationLagFault,
)

NodeFaultType = Literal["blackhole", "latency", "bandwidth", "packetLoss", "replicationLag"]
NODE_FAULT_TYPES: tuple[str, ...] = get_args(NodeFaultType)
Direction = Literal["both", "ingress", "egress"]
Mode = Literal["throttle", "pause"]

#: addresses no fault ever cuts or slows: loopback, link-local (ARP/ND, cloud metadata)
#: and multicast. "Everything but the own region" means everything but these as well.
ALWAYS_LOCAL: tuple[str, ...] = (
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "255.255.255.255/32",
    "::1/128",
    "fe80::/10",
    "ff00::/8",
)

_ALWAYS_LOCAL_NETS = tuple(ipaddress.ip_network(c) for c in ALWAYS_LOCAL)
_KEY = re.compile(r"[a-z0-9]{1,16}")
#: the longest list of CIDRs one NodeFault takes (every element becomes a set entry and,
#: for tc faults, one u32 filter)
MAX_CIDRS = 1024


def _cidrs(values: Iterable[str], what: str) -> tuple[str, ...]:
    """Normalise CIDRs/addresses (``10.1.2.3`` -> ``10.1.2.3/32``), sorted and unique."""
    out: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for value in values:
        try:
            out.add(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise InvalidInputError(f"{what}: {value!r} is not an IP address or CIDR") from None
    if len(out) > MAX_CIDRS:
        raise InvalidInputError(f"{what}: {len(out)} entries; at most {MAX_CIDRS}")
    return tuple(str(n) for n in sorted(out, key=lambda n: (n.version, n)))


def _ports(values: Iterable[int], what: str) -> tuple[int, ...]:
    out = set()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise InvalidInputError(f"{what}: {value!r} is not a TCP port (1-65535)")
        out.add(value)
    return tuple(sorted(out))


def is_always_local(cidr: str) -> bool:
    """True for loopback, link-local and multicast ranges (never a peer)."""
    net = ipaddress.ip_network(cidr, strict=False)
    return any(
        net.version == keep.version and net.subnet_of(keep)  # type: ignore[arg-type]
        for keep in _ALWAYS_LOCAL_NETS
    )


def split_families(cidrs: Iterable[str]) -> tuple[list[str], list[str]]:
    """(IPv4 CIDRs, IPv6 CIDRs) of already normalised CIDRs."""
    v4: list[str] = []
    v6: list[str] = []
    for c in cidrs:
        (v6 if ":" in c else v4).append(c)
    return v4, v6


@dataclass(frozen=True)
class NodeFault:
    """One fault as one node applies it. Validated and normalised on construction.

    ``peers`` are the far side of every affected link; with ``everything`` the far side is
    every address outside ``local`` (the node's own region) and :data:`ALWAYS_LOCAL`.
    ``allow`` addresses and ``allow_ports`` are never touched (the API server, metrics).
    Blackhole cuts in ``direction``; the other types act on traffic the node sends.
    """

    key: str
    type: NodeFaultType
    peers: tuple[str, ...] = ()
    everything: bool = False
    local: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    allow_ports: tuple[int, ...] = ()
    direction: Direction = "both"
    delay: float = 0.0  # seconds (latency)
    jitter: float = 0.0  # seconds (latency)
    rate: float = 0.0  # bits/s (bandwidth; replicationLag throttle)
    percent: float = 0.0  # packetLoss
    mode: Mode = "throttle"  # replicationLag
    ports: tuple[int, ...] = ()  # replicationLag: the replication port(s)

    def __post_init__(self) -> None:
        if not _KEY.fullmatch(self.key):
            raise InvalidInputError(f"key {self.key!r}: must be 1-16 of [a-z0-9]")
        if self.type not in NODE_FAULT_TYPES:
            raise InvalidInputError(
                f"type {self.type!r}: not a node fault ({', '.join(NODE_FAULT_TYPES)})"
            )
        if self.direction not in get_args(Direction):
            raise InvalidInputError(f"direction {self.direction!r}: both, ingress or egress")
        if self.mode not in get_args(Mode):
            raise InvalidInputError(f"mode {self.mode!r}: throttle or pause")
        object.__setattr__(self, "peers", _cidrs(self.peers, "peers"))
        object.__setattr__(self, "local", _cidrs(self.local, "local"))
        object.__setattr__(self, "allow", _cidrs(self.allow, "allow"))
        object.__setattr__(self, "ports", _ports(self.ports, "ports"))
        object.__setattr__(self, "allow_ports", _ports(self.allow_ports, "allowPorts"))
        if not self.peers and not self.everything:
            raise InvalidInputError(
                f"fault {self.key}: no peer addresses (and not 'everything'): nothing to act on"
            )
        checks: list[tuple[bool, str]] = [
            (self.type != "latency" or self.delay > 0, "latency needs delay > 0"),
            (0 <= self.jitter <= 60 and 0 <= self.delay <= 60, "delay/jitter: 0-60 s"),
            (self.type != "bandwidth" or self.rate >= 8, "bandwidth needs rate >= 8 bit/s"),
            (
                not (self.type == "replicationLag" and self.mode == "throttle") or self.rate >= 8,
                "replicationLag throttle needs rate >= 8 bit/s",
            ),
            (self.type != "packetLoss" or 0 < self.percent <= 100, "percent: (0, 100]"),
            (
                self.type != "replicationLag" or bool(self.ports),
                "replicationLag needs the replication port(s)",
            ),
        ]
        for ok, reason in checks:
            if not ok:
                raise InvalidInputError(f"fault {self.key}: {reason}")

    # -- what the rules act on -----------------------------------------------------------
    @property
    def uses_nft(self) -> bool:
        return self.type in ("blackhole", "packetLoss") or (
            self.type == "replicationLag" and self.mode == "pause"
        )

    @property
    def uses_tc(self) -> bool:
        return not self.uses_nft

    @property
    def cuts_ingress(self) -> bool:
        return self.type == "blackhole" and self.direction in ("both", "ingress")

    @property
    def cuts_egress(self) -> bool:
        return self.type != "blackhole" or self.direction in ("both", "egress")

    @property
    def keep(self) -> tuple[str, ...]:
        """What 'everything' leaves alone: the own region and the always-local ranges."""
        return _cidrs((*self.local, *ALWAYS_LOCAL), "local")

    def describe(self) -> str:
        far = "every address outside the region" if self.everything else "peers"
        if self.type == "blackhole":
            return f"nft: drop {self.direction} traffic to/from {far}"
        if self.type == "latency":
            jitter = f" ± {self.jitter * 1000:g}ms" if self.jitter else ""
            return f"tc netem: delay traffic to {far} by {self.delay * 1000:g}ms{jitter}"
        if self.type == "bandwidth":
            return f"tc tbf: limit traffic to {far} to {self.rate:g} bit/s"
        if self.type == "packetLoss":
            return f"nft numgen: drop {self.percent:g}% of traffic to {far}"
        ports = ",".join(str(p) for p in self.ports)
        if self.mode == "pause":
            return f"nft: drop TCP port {ports} traffic to {far} (replication paused)"
        return f"tc htb: throttle TCP port {ports} traffic to {far} to {self.rate:g} bit/s"

    # -- the NetworkFault spec -------------------------------------------------------------
    def to_spec(self) -> dict[str, Any]:
        """The camelCase fields of a NetworkFault's spec that describe the rules."""
        spec: dict[str, Any] = {"key": self.key, "type": self.type}
        if self.peers:
            spec["peers"] = list(self.peers)
        if self.everything:
            spec["everything"] = True
        if self.local:
            spec["local"] = list(self.local)
        if self.allow:
            spec["allow"] = list(self.allow)
        if self.allow_ports:
            spec["allowPorts"] = list(self.allow_ports)
        if self.type == "blackhole":
            spec["direction"] = self.direction
        elif self.type == "latency":
            spec.update(delaySeconds=self.delay, jitterSeconds=self.jitter)
        elif self.type == "bandwidth":
            spec["rateBits"] = self.rate
        elif self.type == "packetLoss":
            spec["percent"] = self.percent
        else:
            spec.update(mode=self.mode, ports=list(self.ports))
            if self.mode == "throttle":
                spec["rateBits"] = self.rate
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> NodeFault:
        """Parse a NetworkFault spec (extra fields such as ``node`` are ignored)."""
        try:
            return cls(
                key=str(spec["key"]),
                type=cast(NodeFaultType, spec["type"]),
                peers=tuple(spec.get("peers") or ()),
                everything=bool(spec.get("everything", False)),
                local=tuple(spec.get("local") or ()),
                allow=tuple(spec.get("allow") or ()),
                allow_ports=tuple(spec.get("allowPorts") or ()),
                direction=cast(Direction, spec.get("direction", "both")),
                delay=float(spec.get("delaySeconds", 0.0)),
                jitter=float(spec.get("jitterSeconds", 0.0)),
                rate=float(spec.get("rateBits", 0.0)),
                percent=float(spec.get("percent", 0.0)),
                mode=cast(Mode, spec.get("mode", "throttle")),
                ports=tuple(spec.get("ports") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"not a NetworkFault spec: {exc!r}") from exc

    def with_allow(self, extra: Iterable[str]) -> NodeFault:
        return replace(self, allow=(*self.allow, *extra))


# --------------------------------------------------------------------------- placement


def fault_key(run_id: str, fault_name: str, region: str) -> str:
    """A short, stable name for nft chains/sets: unique per run, fault and region."""
    return hashlib.sha256(f"{run_id}\0{fault_name}\0{region}".encode()).hexdigest()[:10]


def node_params(fault: FaultBase, replication_ports: Sequence[int] = ()) -> dict[str, Any]:
    """The NodeFault fields that a GameDay fault's own parameters give."""
    if isinstance(fault, BlackholeFault):
        return {"type": "blackhole", "direction": fault.direction}
    if isinstance(fault, LatencyFault):
        return {"type": "latency", "delay": fault.delay, "jitter": fault.jitter}
    if isinstance(fault, BandwidthFault):
        return {"type": "bandwidth", "rate": fault.rate}
    if isinstance(fault, PacketLossFault):
        return {"type": "packetLoss", "percent": fault.percent}
    if isinstance(fault, ReplicationLagFault):
        if not replication_ports:
            raise InvalidInputError(
                f"fault {fault.name!r}: replicationLag on nodes needs the replication "
                "port(s): set CHAOSAA_REPLICATION_PORTS (e.g. 5432)"
            )
        return {
            "type": "replicationLag",
            "mode": fault.mode,
            "rate": fault.bandwidth,
            "ports": tuple(replication_ports),
        }
    raise InvalidInputError(
        f"fault {fault.name!r}: {getattr(fault, 'type', '?')} is not a node-level fault"
    )


def node_faults(
    fault: FaultBase,
    addresses: Mapping[str, Sequence[str]],
    *,
    run_id: str,
    replication_ports: Sequence[int] = (),
    allow: Sequence[str] = (),
    allow_ports: Sequence[int] = (),
) -> dict[str, NodeFault]:
    """Expand a GameDay fault into the NodeFault each region's nodes apply.

    ``addresses`` maps every region of the target to its CIDRs (node addresses, pod
    CIDRs). Placement:

    - blackhole ``regions``: the named regions' nodes cut ``direction`` to/from every other
      region (and, with ``clients``, everything outside the region);
    - blackhole ``partition``: ``both`` - every group's nodes cut the other groups;
      ``ingress``/``egress`` (exactly two groups) - relative to the first group, on its nodes;
    - latency, bandwidth, packetLoss, replicationLag: one directed link [a, b] acts on the
      traffic a's nodes send to b (``regions: [r]`` = every link from and to r). Latency
      with ``clients`` also delays everything r's nodes send outside the region.
    """
    regions = list(addresses)
    missing = sorted(fault.referenced_regions() - set(regions))
    if missing:
        raise InvalidInputError(f"fault {fault.name!r}: unknown region(s) {', '.join(missing)}")

    def own(region: str) -> set[str]:
        cidrs = _cidrs(addresses[region], f"addresses of region {region}")
        return {c for c in cidrs if not is_always_local(c)}

    def far(region: str, others: Iterable[str]) -> tuple[str, ...]:
        mine = own(region)
        cidrs = {c for o in others for c in _cidrs(addresses[o], f"addresses of region {o}")}
        return tuple(sorted(c for c in cidrs - mine if not is_always_local(c)))

    common: dict[str, Any] = {"allow": tuple(allow), "allow_ports": tuple(allow_ports)}
    out: dict[str, NodeFault] = {}

    def key(region: str) -> str:
        return fault_key(run_id, fault.name, region)

    params = {**node_params(fault, replication_ports), **common}
    scope = fault.scope()
    if params["type"] == "blackhole":
        if scope.regions:
            for r in scope.regions:
                out[r] = _make(
                    fault.name,
                    key=key(r),
                    peers=far(r, [o for o in regions if o != r]),
                    everything=scope.clients,
                    local=tuple(sorted(own(r))),
                    **params,
                )
            return out
        groups = scope.partition
        # ingress/egress are relative to the first of exactly two groups (validated)
        sides = groups if params["direction"] == "both" else groups[:1]
        for gi, group in enumerate(sides):
            others = [r for gj, g in enumerate(groups) if gj != gi for r in g]
            for r in group:
                out[r] = _make(
                    fault.name,
                    key=key(r),
                    peers=far(r, others),
                    local=tuple(sorted(own(r))),
                    **params,
                )
        return out

    targets: dict[str, list[str]] = {}
    for a, b in scope.directed_links(regions):
        targets.setdefault(a, []).append(b)
    everything_in = set(scope.regions) if scope.clients else set()
    for source, dests in targets.items():
        out[source] = _make(
            fault.name,
            key=key(source),
            peers=far(source, dests),
            everything=source in everything_in,
            local=tuple(sorted(own(source))),
            **params,
        )
    return out


def _make(fault_name: str, **kwargs: Any) -> NodeFault:
    try:
        return NodeFault(**kwargs)
    except InvalidInputError as exc:
        raise InvalidInputError(f"fault {fault_name!r}: {exc}") from None
