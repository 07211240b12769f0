"""``blackhole``: cut a region off from everything, or cut between partition groups."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from chaosaa.spec.faults.base import FaultBase, FaultScope, join
from chaosaa.spec.types import RegionName


class BlackholeFault(FaultBase):
    type: Literal["blackhole"]
    regions: list[RegionName] | None = Field(
        None, min_length=1, description="isolate these regions from everything"
    )
    partition: list[Annotated[list[RegionName], Field(min_length=1)]] | None = Field(
        None, min_length=2, description="cut only between these groups, e.g. [[us], [eu, ap]]"
    )
    direction: Literal["both", "ingress", "egress"] = Field("both", description="which way to cut")
    clients: bool | None = Field(
        None, description="also cut client traffic (default: true for regions)"
    )

    @model_validator(mode="after")
    def _one_scope(self) -> Self:
        if (self.regions is None) == (self.partition is None):
            raise ValueError("give exactly one of regions or partition")
        if self.partition is not None:
            seen: set[str] = set()
            for group in self.partition:
                for region in group:
                    if region in seen:
                        raise ValueError(f"partition: region {region} is in more than one group")
                    seen.add(region)
            if self.direction != "both" and len(self.partition) != 2:
                raise ValueError(
                    f"direction {self.direction} needs exactly two partition groups "
                    "(it is relative to the first)"
                )
            if self.clients:
                raise ValueError("clients: true applies to regions, not to a partition")
        return self

    @property
    def cuts_clients(self) -> bool:
        return self.clients if self.clients is not None else self.regions is not None

    def scope(self) -> FaultScope:
        return FaultScope(
            regions=tuple(self.regions or ()),
            partition=tuple(tuple(group) for group in self.partition or ()),
            clients=self.cuts_clients,
        )

    def describe(self) -> str:
        way = "" if self.direction == "both" else f", {self.direction} only"
        if self.partition is not None:
            groups = " | ".join(join(g) for g in self.partition)
            return f"drop all traffic between {groups}{way}"
        who = "peers and clients" if self.cuts_clients else "peers"
        return f"drop all traffic to and from {who}{way}"
