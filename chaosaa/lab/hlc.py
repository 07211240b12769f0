"""Hybrid logical clocks (Kulkarni et al.) for last-writer-wins ordering.

A timestamp is ``(wall_ms, logical)``; ties between regions are broken by the origin
region's name so every node orders any two versions the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, order=True, slots=True)
class Version:
    """Total order of writes: HLC first, origin region as the tie-break."""

    wall_ms: int
    logical: int
    origin: str

    def hlc_text(self) -> str:
        return f"{self.wall_ms}.{self.logical}"

    def as_json(self) -> dict[str, object]:
        return {"wall": self.wall_ms, "logical": self.logical, "origin": self.origin}


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class HybridLogicalClock:
    """Not thread-safe on purpose: the node touches it only from its storage thread."""

    def __init__(self, clock: Callable[[], int] = _wall_ms) -> None:
        self._clock = clock
        self.wall_ms = 0
        self.logical = 0

    def now(self) -> tuple[int, int]:
        """Timestamp for a local event (a write); strictly greater than anything seen."""
        physical = self._clock()
        if physical > self.wall_ms:
            self.wall_ms, self.logical = physical, 0
        else:
            self.logical += 1
        return self.wall_ms, self.logical

    def observe(self, wall_ms: int, logical: int) -> None:
        """Merge a timestamp received from a peer, so later local writes order after it."""
        physical = self._clock()
        if physical > self.wall_ms and physical > wall_ms:
            self.wall_ms, self.logical = physical, 0
        elif wall_ms > self.wall_ms:
            self.wall_ms, self.logical = wall_ms, logical + 1
        elif wall_ms == self.wall_ms:
            self.logical = max(self.logical, logical) + 1
        else:
            self.logical += 1
