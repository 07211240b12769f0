"""What every fault type has: timing, a scope and a one-line description.

A fault type is one module of this package: its model (the fields a GameDay file gives),
its validation, its :class:`FaultScope` ("which regions and links does it touch?") and
its :meth:`FaultBase.describe` line. Everything else derives from those two methods: the
regions a GameDay must declare, the scope column of the report, the plan's scopes, where
node rules go, and where a canary write shows the lag a fault causes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Self

from pydantic import Field, model_validator

from chaosaa.durations import format_duration
from chaosaa.spec.types import NAME_PATTERN, Duration, Link, Model, RegionName

DirectedLink = tuple[str, str]


@dataclass(frozen=True)
class FaultScope:
    """The regions, links or partition groups a fault touches (exactly one is set)."""

    #: whole regions
    regions: tuple[str, ...] = ()
    #: directed links [source, target]
    links: tuple[DirectedLink, ...] = ()
    #: groups cut from each other
    partition: tuple[tuple[str, ...], ...] = ()
    #: client traffic to the regions is touched too
    clients: bool = False

    def referenced(self) -> set[str]:
        """Every region the scope names."""
        return {*self.regions, *(r for link in self.links for r in link)} | {
            r for group in self.partition for r in group
        }

    def __str__(self) -> str:
        """A few words for the report: ``regions eu``, ``partition us | eu,ap``."""
        if self.partition:
            return "partition " + " | ".join(",".join(group) for group in self.partition)
        if self.regions:
            return "regions " + ",".join(self.regions)
        return "links " + " ".join(f"{a}->{b}" for a, b in self.links)

    def items(self) -> list[str]:
        """One label per region or link (``region eu``, ``link us->eu``), for plans."""
        if self.partition:
            return [" | ".join(",".join(group) for group in self.partition)]
        if self.regions:
            return [f"region {r}" for r in self.regions]
        return [f"link {a}->{b}" for a, b in self.links]

    def directed_links(self, all_regions: Sequence[str]) -> list[DirectedLink]:
        """The links the fault acts on: a region stands for every link from and to it;
        a partition for every link from one group into another."""
        if self.links:
            return list(self.links)
        out: list[DirectedLink] = []
        for gi, group in enumerate(self.partition):
            for gj, others in enumerate(self.partition):
                if gi != gj:
                    out += [(a, b) for a in group for b in others]
        for r in self.regions:
            for o in all_regions:
                if o != r:
                    out += [(r, o), (o, r)]
        return list(dict.fromkeys(out))


class FaultBase(Model):
    """Fields every fault has (DESIGN.md section 2)."""

    name: str = Field(pattern=NAME_PATTERN, description="unique among the faults")
    after: Duration = Field(0.0, ge=0, description="offset from the start of injection")
    duration: Duration = Field(gt=0, description="how long the fault stays in place")
    ttl: Duration = Field(10.0, gt=0, description="dead-man switch: expires unless renewed")

    def scope(self) -> FaultScope:
        """Which regions and links the fault touches."""
        raise NotImplementedError

    def describe(self) -> str:
        """What the fault does, in one line, whatever the target."""
        raise NotImplementedError

    def referenced_regions(self) -> set[str]:
        return self.scope().referenced()

    def canary_route(self, all_regions: Sequence[str]) -> tuple[str, list[str]] | None:
        """Where a canary write shows the lag this fault causes: (source region, the
        regions to poll), or None when a canary says nothing about it."""
        links = self.scope().directed_links(all_regions)
        if not links:
            return None
        source = links[0][0]
        return source, list(dict.fromkeys(b for a, b in links if a == source))


class RegionsOrLinks(FaultBase):
    """Faults that take ``regions`` or ``links`` (exactly one)."""

    regions: list[RegionName] | None = Field(
        None, min_length=1, description="every link of these regions"
    )
    links: list[Link] | None = Field(
        None, min_length=1, description="directed links [source, target]"
    )

    @model_validator(mode="after")
    def _one_scope(self) -> Self:
        if (self.regions is None) == (self.links is None):
            raise ValueError("give exactly one of regions or links")
        for a, b in self.links or []:
            if a == b:
                raise ValueError(f"link [{a}, {b}] connects a region to itself")
        return self

    def scope(self) -> FaultScope:
        return FaultScope(
            regions=tuple(self.regions or ()),
            links=tuple((a, b) for a, b in self.links or ()),
            clients=bool(getattr(self, "clients", False)),
        )


def seconds(value: float) -> str:
    """A duration as a user writes it (``200ms``, ``1m30s``)."""
    return format_duration(value)


def rate(bits_per_second: float) -> str:
    """A rate as tc writes it (``64kbit``)."""
    for unit, factor in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bits_per_second >= factor:
            return f"{bits_per_second / factor:g}{unit}/s"
    return f"{bits_per_second:g}bit/s"


def join(names: Iterable[str]) -> str:
    return ",".join(names)
