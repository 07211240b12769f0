"""``replicationLag``: slow down or pause replication only, between regions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chaosaa.spec.faults.base import RegionsOrLinks, rate
from chaosaa.spec.types import Rate


class ReplicationLagFault(RegionsOrLinks):
    type: Literal["replicationLag"]
    mode: Literal["throttle", "pause"] = Field("throttle", description="slow or stop replication")
    bandwidth: Rate = Field(64_000.0, description="replication bandwidth when throttling")

    def describe(self) -> str:
        if self.mode == "pause":
            return "pause replication"
        return f"throttle replication to {rate(self.bandwidth)}"
