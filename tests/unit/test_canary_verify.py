"""CanaryProbe.verify: regions that disagree on a canary are judged only after they had
the convergence timeout to agree (a write that failed at the client may have committed in
one region and still be on its way to the others)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from chaosaa.canary.probe import CanaryProbe
from chaosaa.canary.stores import CanaryStore


class MemoryStore(CanaryStore):
    """A region's canaries in memory; ``arrives`` maps a canary to when it shows up."""

    def __init__(self, rows: dict[tuple[str, int], tuple[str, float]]) -> None:
        super().__init__(SimpleNamespace(table="canaries"))  # type: ignore[arg-type]
        self.rows = rows

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ensure_table(self) -> None: ...

    async def insert(
        self, run_id: str, origin: str, seq: int, value: str, written_at: float
    ) -> None:
        raise AssertionError("nothing is written in these tests")

    async def present(self, run_id: str, origin: str, seqs: Sequence[int]) -> set[int]:
        return set()

    async def read_all(self, run_id: str) -> dict[tuple[str, int], str]:
        now = time.monotonic()
        return {key: value for key, (value, at) in self.rows.items() if at <= now}


def probe(**regions: Any) -> CanaryProbe:
    return CanaryProbe({r: MemoryStore(rows) for r, rows in regions.items()}, poll_interval=0.01)


async def test_an_unacknowledged_canary_on_its_way_is_not_divergent() -> None:
    soon = time.monotonic() + 0.6
    p = probe(us={("us", 1): ("v", 0.0)}, eu={("us", 1): ("v", soon)})
    integrity = await p.verify(5.0)
    assert (integrity.lost, integrity.divergent) == (0, 0)
    assert time.monotonic() >= soon


async def test_regions_that_still_disagree_after_the_timeout_are_divergent() -> None:
    p = probe(us={("us", 1): ("v", 0.0)}, eu={("us", 1): ("other", 0.0)})
    started = time.monotonic()
    integrity = await p.verify(0.5)
    assert integrity.divergent == 1 and integrity.divergent_canaries == ["us/1"]
    assert time.monotonic() - started >= 0.5
