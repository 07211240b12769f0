"""``packetLoss``: drop a share of the packets on the links of regions, or given links."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chaosaa.spec.faults.base import RegionsOrLinks


class PacketLossFault(RegionsOrLinks):
    type: Literal["packetLoss"]
    percent: float = Field(gt=0, le=100, description="share of traffic dropped")

    def describe(self) -> str:
        return f"drop {self.percent:g}% of packets"
