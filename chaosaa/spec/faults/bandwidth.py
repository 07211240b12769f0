"""``bandwidth``: limit the throughput of the links of regions, or of given links."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chaosaa.spec.faults.base import RegionsOrLinks, rate
from chaosaa.spec.types import Rate


class BandwidthFault(RegionsOrLinks):
    type: Literal["bandwidth"]
    rate: Rate = Field(description="bandwidth limit, e.g. 1mbit")

    def describe(self) -> str:
        return f"limit bandwidth to {rate(self.rate)}"
