"""The operator's notion of "now", injectable so that schedule tests do not take hours.

Production uses the wall clock. ``CHAOSAA_OPERATOR_CLOCK=scale=6,anchor=1767225600`` makes
time run six times faster from the anchor (a unix instant) on, so an every-minute schedule
fires every 10 real seconds; because the anchor is fixed, the fake time is continuous
across operator restarts, which is what the restart tests need.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from chaosaa.errors import InvalidInputError

ENV_CLOCK = "CHAOSAA_OPERATOR_CLOCK"


@dataclass(frozen=True)
class Clock:
    """``now = anchor + (wall - anchor) * scale``; the identity by default."""

    anchor: float = 0.0
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str | None) -> Clock:
        """``scale=6,anchor=1767225600`` (either part optional); empty = the wall clock."""
        if not text:
            return cls()
        values: dict[str, float] = {}
        for part in text.split(","):
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep or key not in ("scale", "anchor"):
                raise InvalidInputError(
                    f"{ENV_CLOCK}={text!r}: expected scale=N,anchor=UNIX (e.g. scale=6,anchor=0)"
                )
            try:
                values[key] = float(raw)
            except ValueError:
                raise InvalidInputError(f"{ENV_CLOCK}: {key}={raw!r} is not a number") from None
        if values.get("scale", 1.0) <= 0:
            raise InvalidInputError(f"{ENV_CLOCK}: scale must be > 0")
        return cls(anchor=values.get("anchor", 0.0), scale=values.get("scale", 1.0))

    @property
    def is_wall(self) -> bool:
        return self.scale == 1.0

    def now(self) -> float:
        return self.from_wall(time.time())

    def from_wall(self, wall: float) -> float:
        """The clock's time at wall-clock instant ``wall``."""
        return self.anchor + (wall - self.anchor) * self.scale

    def wall_seconds(self, seconds: float) -> float:
        """How long ``seconds`` of this clock take on the wall clock."""
        return seconds / self.scale
