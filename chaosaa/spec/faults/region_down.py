"""``regionDown``: the whole region stops serving (processes, pods or nodes stopped)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from chaosaa.spec.faults.base import FaultBase, FaultScope
from chaosaa.spec.types import RegionName


class RegionDownFault(FaultBase):
    type: Literal["regionDown"]
    regions: list[RegionName] = Field(min_length=1, description="regions to stop")

    def scope(self) -> FaultScope:
        return FaultScope(regions=tuple(self.regions))

    def describe(self) -> str:
        return "stop every workload of the region"

    def canary_route(self, all_regions: Sequence[str]) -> tuple[str, list[str]] | None:
        return None  # a stopped region takes no canary write
