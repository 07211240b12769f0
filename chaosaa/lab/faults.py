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

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from chaosaa.durations import parse_duration

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


@dataclass
class FaultPlan:
    """What a fault does: conditions for the link proxy, and node processes to stop."""

    conditions: list[dict[str, Any]] = field(default_factory=list)
    stop_regions: list[str] = field(default_factory=list)


def _add(t: Targets, link: str, direction: str) -> None:
    t.setdefault(link, set()).add(direction)


def flow(a: str, b: str, *, replication_only: bool = False) -> Targets:
    """Every stream carrying data from ``a`` to ``b`` (``a`` may be ``router``)."""
    t: Targets = {}
    _add(t, f"{a}>{b}", "up")
    if a != ROUTER and not replication_only:
        _add(t, f"{b}>{a}", "down")
    return t


def region_streams(region: str, regions: Iterable[str], direction: str, clients: bool) -> Targets:
    """Streams leaving (egress), entering (ingress) or both for one region."""
    t: Targets = {}
    others = [r for r in regions if r != region]
    if direction in ("egress", "both"):
        for o in others:
            _merge(t, flow(region, o))
        if clients:
            _add(t, f"{ROUTER}>{region}", "down")
    if direction in ("ingress", "both"):
        for o in others:
            _merge(t, flow(o, region))
        if clients:
            _add(t, f"{ROUTER}>{region}", "up")
    return t


def _merge(into: Targets, other: Targets) -> None:
    for link, dirs in other.items():
        into.setdefault(link, set()).update(dirs)


def _as_list(t: Targets) -> list[dict[str, str]]:
    out = []
    for link, dirs in sorted(t.items()):
        out.append({"link": link, "dir": "both" if dirs == {"up", "down"} else next(iter(dirs))})
    return out


def plan(req: FaultRequest, regions: list[str]) -> FaultPlan:
    """Translate a validated request for a lab with ``regions`` into a plan."""
    unknown = req.named_regions() - set(regions)
    if unknown:
        raise ValueError(
            f"unknown region(s) {', '.join(sorted(unknown))}; the lab has {', '.join(regions)}"
        )
    result = FAULT_TYPES[req.type].translate(req, regions)
    if not (result.conditions or result.stop_regions):
        raise ValueError("the fault selects no link")
    return result


# -- translations: one per fault type ------------------------------------------------------
def _on(targets: Targets, *conditions: dict[str, Any]) -> FaultPlan:
    """A plan setting ``conditions`` on ``targets`` (none if no link is selected)."""
    if not targets:
        return FaultPlan()
    return FaultPlan([{**c, "targets": _as_list(targets)} for c in conditions])


def _latency_condition(req: FaultRequest) -> dict[str, Any]:
    return {"type": "latency", "delay": seconds(req.delay or 0), "jitter": seconds(req.jitter or 0)}


def _selected_streams(req: FaultRequest, regions: Sequence[str]) -> Targets:
    """``links``: data from source to target; ``regions``: data leaving them (by default)."""
    targets: Targets = {}
    if req.links:
        for a, b in req.links:
            _merge(targets, flow(a, b))
    else:
        direction = req.direction or "egress"
        clients = bool(req.clients)
        for r in req.regions or []:
            _merge(targets, region_streams(r, regions, direction, clients))
    return targets


def _blackhole(req: FaultRequest, regions: Sequence[str]) -> FaultPlan:
    targets: Targets = {}
    direction = req.direction or "both"
    if req.regions:
        clients = True if req.clients is None else req.clients
        for r in req.regions:
            _merge(targets, region_streams(r, regions, direction, clients))
    elif req.partition:
        groups = req.partition
        for gi, g in enumerate(groups):
            for hj, h in enumerate(groups):
                if gi == hj:
                    continue
                for a in g:
                    for b in h:
                        # With two groups, direction is relative to the first group.
                        if direction == "egress" and gi != 0:
                            continue
                        if direction == "ingress" and gi == 0:
                            continue
                        _merge(targets, flow(a, b))
    else:
        for a, b in req.links or []:
            _merge(targets, flow(a, b))
            if direction == "both":
                _merge(targets, flow(b, a))
    return _on(targets, {"type": "blackhole", "mode": req.mode_or_default})


def _latency(req: FaultRequest, regions: Sequence[str]) -> FaultPlan:
    return _on(_selected_streams(req, regions), _latency_condition(req))


def _replication_lag(req: FaultRequest, regions: Sequence[str]) -> FaultPlan:
    """Replication pushes only (``up`` on region-to-region links): held, or throttled."""
    targets: Targets = {}
    if req.links:
        for a, b in req.links:
            _add(targets, f"{a}>{b}", "up")
    else:
        for r in req.regions or []:
            for o in regions:
                if o != r:
                    _add(targets, f"{r}>{o}", "up")
                    _add(targets, f"{o}>{r}", "up")
    condition: dict[str, Any]
    if req.mode_or_default == "pause":
        condition = {"type": "blackhole", "mode": "hang"}
    else:
        rate = parse_rate(req.bandwidth or req.rate or DEFAULT_REPLICATION_THROTTLE)
        condition = {"type": "bandwidth", "rate": rate}
    if req.delay is None:
        return _on(targets, condition)
    return _on(targets, condition, _latency_condition(req))


def _region_down(req: FaultRequest, _regions: Sequence[str]) -> FaultPlan:
    return FaultPlan(stop_regions=list(req.regions or []))


def _bandwidth(req: FaultRequest, regions: Sequence[str]) -> FaultPlan:
    rate = parse_rate(req.rate or req.bandwidth or 0)
    return _on(_selected_streams(req, regions), {"type": "bandwidth", "rate": rate})


def _packet_loss(req: FaultRequest, regions: Sequence[str]) -> FaultPlan:
    loss = {"type": "loss", "percent": float(req.percent or 0), "mode": req.mode_or_default}
    return _on(_selected_streams(req, regions), loss)


# -- the registry ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FaultType:
    """Everything the lab knows about one fault type."""

    #: the selectors it takes (exactly one of them per request)
    selectors: frozenset[Selector]
    #: a validated request, for a lab with these regions -> what to do
    translate: Callable[[FaultRequest, Sequence[str]], FaultPlan]
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
