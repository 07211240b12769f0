"""Which regions accepted writes while a fault was in place: the question an active-active
claim stands or falls by ("multi-region" with one primary accepts none anywhere once the
primary's region is down)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from chaosaa.measure.traffic import region_of
from chaosaa.model import Sample

#: (attempted, accepted)
Counts = tuple[int, int]
#: one write attempt: (sent at, ended at, acknowledged?)
Attempt = tuple[float, float, bool]


def probe_writes(samples: Iterable[Sample], start: float, end: float) -> dict[str, Counts]:
    """Writes of the traffic probe sent in ``[start, end)`` and how many of them were
    acknowledged before ``end``, per region (the serving region, else the home region)."""
    attempts: dict[str, list[Attempt]] = {}
    for s in samples:
        if s.write:
            attempts.setdefault(region_of(s), []).append((s.sent_at, s.sent_at + s.latency, s.ok))
    return attempted_writes(attempts, start, end)


def attempted_writes(
    attempts: Mapping[str, Iterable[Attempt]], start: float, end: float
) -> dict[str, Counts]:
    """Per region, write attempts sent in ``[start, end)``, and those of them acknowledged
    before ``end`` (a write held by a frozen server and committed once it is thawed was not
    accepted while the fault was in place)."""
    out = {}
    for region, events in attempts.items():
        inside = [ok and done < end for sent, done, ok in events if start <= sent < end]
        if inside:
            out[region] = (len(inside), sum(inside))
    return dict(sorted(out.items()))


def refusing_regions(counts: Mapping[str, Counts]) -> list[str]:
    """Regions that were sent writes and accepted none of them."""
    return [r for r, (attempted, accepted) in counts.items() if attempted and not accepted]
