"""Lab fault requests and their translation into link-proxy conditions.

Pure logic: which links, which stream directions, which condition. The supervisor applies
the resulting plan; tests check the translation without starting anything.

Links are named ``src>dst``: ``router>eu`` carries client traffic to eu, ``us>eu`` carries
us's replication pushes to eu. A link's ``up`` stream flows from ``src`` to ``dst``, its
``down`` stream back. So data *leaving* region X travels on ``X>*`` links ``up`` and on
``*>X`` links ``down``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chaosaa.durations import parse_duration

FaultType = Literal[
    "blackhole", "latency", "replicationLag", "regionDown", "bandwidth", "packetLoss"
]
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


class FaultRequest(BaseModel):
    """Body of ``POST /faults`` on the supervisor (camelCase, unknown fields rejected)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str | None = None
    type: FaultType
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
        selectors = [s for s in ("regions", "partition", "links") if getattr(self, s)]
        if len(selectors) != 1:
            raise ValueError("give exactly one of regions, partition, links")
        allowed = {
            "blackhole": {"regions", "partition", "links"},
            "latency": {"regions", "links"},
            "replicationLag": {"regions", "links"},
            "regionDown": {"regions"},
            "bandwidth": {"regions", "links"},
            "packetLoss": {"regions", "links"},
        }[self.type]
        if selectors[0] not in allowed:
            raise ValueError(f"{self.type} takes {' or '.join(sorted(allowed))}")
        if self.type == "latency" and self.delay is None:
            raise ValueError("latency needs delay (e.g. 200ms)")
        if self.type == "bandwidth" and self.rate is None and self.bandwidth is None:
            raise ValueError("bandwidth needs rate (e.g. 1mbit)")
        if self.type == "packetLoss" and self.percent is None:
            raise ValueError("packetLoss needs percent")
        if self.ttl_seconds <= 0 or self.ttl_seconds > 3600:
            raise ValueError("ttl must be > 0 and <= 1h")
        modes = {
            "blackhole": {"drop", "hang"},
            "replicationLag": {"throttle", "pause"},
            "packetLoss": {"retransmit", "reset"},
        }
        if self.mode is not None and self.mode not in modes.get(self.type, set()):
            ok = sorted(modes.get(self.type, set()))
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
    if req.type == "regionDown":
        return FaultPlan(stop_regions=list(req.regions or []))

    targets: Targets = {}
    condition: dict[str, Any]
    if req.type == "blackhole":
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
        condition = {"type": "blackhole", "mode": req.mode or "hang"}
    elif req.type == "replicationLag":
        if req.links:
            for a, b in req.links:
                _add(targets, f"{a}>{b}", "up")
        else:
            for r in req.regions or []:
                for o in regions:
                    if o != r:
                        _add(targets, f"{r}>{o}", "up")
                        _add(targets, f"{o}>{r}", "up")
        if (req.mode or "throttle") == "pause":
            condition = {"type": "blackhole", "mode": "hang"}
        else:
            condition = {
                "type": "bandwidth",
                "rate": parse_rate(req.bandwidth or req.rate or DEFAULT_REPLICATION_THROTTLE),
            }
    else:
        if req.links:
            for a, b in req.links:
                _merge(targets, flow(a, b))
        else:
            direction = req.direction or "egress"
            clients = bool(req.clients)
            for r in req.regions or []:
                _merge(targets, region_streams(r, regions, direction, clients))
        if req.type == "latency":
            condition = {
                "type": "latency",
                "delay": seconds(req.delay or 0),
                "jitter": seconds(req.jitter or 0),
            }
        elif req.type == "bandwidth":
            condition = {"type": "bandwidth", "rate": parse_rate(req.rate or req.bandwidth or 0)}
        else:
            condition = {
                "type": "loss",
                "percent": float(req.percent or 0),
                "mode": req.mode or "retransmit",
            }
    result = FaultPlan()
    if targets:
        result.conditions.append({**condition, "targets": _as_list(targets)})
    if req.type == "replicationLag" and req.delay is not None and targets:
        result.conditions.append(
            {
                "type": "latency",
                "delay": seconds(req.delay),
                "jitter": seconds(req.jitter or 0),
                "targets": _as_list(targets),
            }
        )
    if not result.conditions:
        raise ValueError("the fault selects no link")
    return result
