"""Which regions accepted writes while a fault was in place: the question an active-active
claim stands or falls by ("multi-region" with one primary accepts none anywhere once the
primary's region is down)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from chaosaa.measure.traffic import region_of
from chaosaa.model import Sample

#: (attempted, accepted)
Counts = tuple[int, int]


def probe_writes(samples: Iterable[Sample], start: float, end: float) -> dict[str, Counts]:
    """Writes of the traffic probe sent in ``[start, end)``, per region (the serving
    region, else the client's home region)."""
    out: dict[str, list[int]] = {}
    for s in samples:
        if s.write and start <= s.sent_at < end:
            counts = out.setdefault(region_of(s), [0, 0])
            counts[0] += 1
            counts[1] += s.ok
    return {region: (n, ok) for region, (n, ok) in sorted(out.items())}


def attempted_writes(
    attempts: Mapping[str, Iterable[tuple[float, bool]]], start: float, end: float
) -> dict[str, Counts]:
    """Per region, write attempts ``(sent at, acknowledged)`` sent in ``[start, end)``."""
    out = {}
    for region, events in attempts.items():
        inside = [ok for at, ok in events if start <= at < end]
        out[region] = (len(inside), sum(inside))
    return dict(sorted(out.items()))


def refusing_regions(counts: Mapping[str, Counts]) -> list[str]:
    """Regions that were sent writes and accepted none of them."""
    return [r for r, (attempted, accepted) in counts.items() if attempted and not accepted]
