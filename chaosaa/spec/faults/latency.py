"""``latency``: add delay (and jitter) to the links of regions, or to given links."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from chaosaa.spec.faults.base import RegionsOrLinks, seconds
from chaosaa.spec.types import Duration


class LatencyFault(RegionsOrLinks):
    type: Literal["latency"]
    delay: Duration = Field(gt=0, description="added one-way delay")
    jitter: Duration = Field(0.0, ge=0, description="+- random variation of the delay")
    clients: bool = Field(False, description="also delay client traffic to the regions")

    @model_validator(mode="after")
    def _jitter_within_delay(self) -> Self:
        if self.jitter > self.delay:
            raise ValueError(
                f"jitter {seconds(self.jitter)} exceeds delay {seconds(self.delay)}: "
                "a packet cannot arrive before it was sent"
            )
        return self

    def describe(self) -> str:
        jitter = f" ± {seconds(self.jitter)}" if self.jitter else ""
        who = " (client traffic too)" if self.clients else ""
        return f"delay by {seconds(self.delay)}{jitter}{who}"
