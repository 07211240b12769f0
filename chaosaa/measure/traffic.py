"""Error rate and windowed success ratios of the traffic probe (report chart, errorRate SLO).

A request belongs to the region that served it; a failure without a serving region (a
timeout, a refused connection) belongs to the client's home region, so a dark region's
failures show on its own line of the chart. A request with neither is ``unknown``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable
from typing import Literal

from chaosaa.measure.result import PROBE, Measurement
from chaosaa.model import Sample

UNKNOWN_REGION = "unknown"


def region_of(sample: Sample) -> str:
    """The region a request is attributed to (serving, else home, else ``unknown``)."""
    return sample.region or sample.home or UNKNOWN_REGION


def error_rate(
    samples: Iterable[Sample],
    start: float,
    end: float,
    counted: Literal["all", "reads", "writes"] = "all",
    *,
    regions: Collection[str] | None = None,
    homes: Collection[str] | None = None,
) -> Measurement:
    """Failed requests / requests sent in ``[start, end)``. No requests is ``no_data``.

    ``counted``: which requests count, all of them or only the reads or the writes (a service that
    answers reads but refuses every write is not available for writes). ``regions`` keeps
    the requests attributed to some regions (``region_of``), ``homes`` those of some
    clients' home regions, wherever they were served; None keeps every one.

    Details: ``requests``, ``errors``, ``byRegion`` (requests, errors, errorRate) and
    ``errorsByKind`` (transport error class, or ``http5xx``).
    """
    if end < start:
        raise ValueError("end is before start")
    requests = errors = 0
    by_region: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    kinds: dict[str, int] = defaultdict(int)
    for s in samples:
        if not start <= s.sent_at < end or (counted != "all" and s.write != (counted == "writes")):
            continue
        region = region_of(s)
        if (regions is not None and region not in regions) or (
            homes is not None and s.home not in homes
        ):
            continue
        counts = by_region[region]
        requests += 1
        counts[0] += 1
        if not s.ok:
            errors += 1
            counts[1] += 1
            kinds[s.error or ("http5xx" if s.status >= 500 else "transport")] += 1
    return Measurement(
        measured=errors / requests if requests else None,
        unit="ratio",
        source=PROBE,
        error_bound_seconds=None,
        details={
            "start": start,
            "end": end,
            "counted": counted,
            "regions": sorted(regions) if regions is not None else None,
            "homes": sorted(homes) if homes is not None else None,
            "requests": requests,
            "errors": errors,
            "byRegion": {
                region: {"requests": n, "errors": e, "errorRate": e / n}
                for region, (n, e) in sorted(by_region.items())
            },
            "errorsByKind": dict(sorted(kinds.items())),
        },
        no_data=requests == 0,
    )


def success_ratio_by_region(
    samples: Iterable[Sample], window: float = 1.0
) -> dict[str, list[tuple[float, float]]]:
    """Per region, ``(window start, ok / requests)`` for each window of ``window`` seconds
    (aligned to multiples of ``window``) in which that region had requests; windows
    without requests are left out (gaps, not 0 and not 1)."""
    return _ratios(((region_of(s), s) for s in samples), window)


def success_ratio(samples: Iterable[Sample], window: float = 1.0) -> list[tuple[float, float]]:
    """The same over all traffic, whatever the region."""
    return _ratios((("", s) for s in samples), window).get("", [])


def _ratios(
    keyed: Iterable[tuple[str, Sample]], window: float
) -> dict[str, list[tuple[float, float]]]:
    if not window > 0:
        raise ValueError(f"window must be > 0, not {window!r}")
    buckets: dict[str, dict[int, list[int]]] = defaultdict(dict)
    for key, s in keyed:
        slot = math.floor(s.sent_at / window)
        counts = buckets[key].setdefault(slot, [0, 0])
        counts[0] += 1
        counts[1] += s.ok
    return {
        key: [(slot * window, ok / n) for slot, (n, ok) in sorted(slots.items())]
        for key, slots in sorted(buckets.items())
    }
