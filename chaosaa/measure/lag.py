"""replicationLag (DESIGN.md §4): the peak of the lag series during the fault window, and
``recoverWithin``: the time from the revert until the lag is back under ``max``. Plus the
canary lag: a marker written in one region, polled for in the others."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from chaosaa.measure.result import CANARY, PROMETHEUS, CanaryLag, ReplicationLag
from chaosaa.model import Series


def replication_lag(
    series: Sequence[Series],
    fault_start: float,
    fault_end: float,
    *,
    max_s: float,
    recover_within: float | None = None,
    step: float,
    scrape_interval: float,
) -> ReplicationLag:
    """Peak lag (seconds) over every series during the fault, and when it recovered.

    The peak is taken over ``[fault_start, fault_end + step + scrape_interval]``: a lag
    sampled just before the revert reaches a range query up to one scrape and one step
    later. NaN points are ignored; no finite point in that window is ``no_data``.

    ``recovered_after`` is the time from ``fault_end`` to the first grid instant from which
    every series stays ``<= max_s`` until the end of the data (a series that has no more
    points is ignored from then on; a series that skips an instant it should have, or is
    NaN there, is not under ``max_s``). None if that never happens within the data.
    The error bound of both numbers is ``step + scrape_interval``.
    """
    if fault_end < fault_start:
        raise ValueError("fault_end is before fault_start")
    bound = step + scrape_interval
    peak: float | None = None
    peak_at: float | None = None
    peak_labels: dict[str, str] = {}
    for s in series:
        for t, v in s.points:
            in_window = fault_start <= t <= fault_end + bound and math.isfinite(v)
            if in_window and (peak is None or v > peak):
                peak, peak_at, peak_labels = v, t, s.labels

    recovered_at = _recovered_at(series, fault_end, max_s)
    recovered_after = None if recovered_at is None else max(0.0, recovered_at - fault_end)
    in_time = None
    if recover_within is not None:
        in_time = recovered_after is not None and recovered_after <= recover_within
    details: dict[str, Any] = {
        "faultStart": fault_start,
        "faultEnd": fault_end,
        "max": max_s,
        "peakAt": peak_at,
        "peakLabels": dict(peak_labels),
        "series": len(series),
        "recoveredAt": recovered_at,
        "recoveredAfter": recovered_after,
        "recoverWithin": recover_within,
        "recoveredInTime": in_time,
        "step": step,
        "scrapeInterval": scrape_interval,
    }
    if peak is None:
        details["reason"] = "no lag data during the fault window"
    return ReplicationLag(
        measured=peak,
        unit="s",
        source=PROMETHEUS,
        error_bound_seconds=bound,
        details=details,
        no_data=peak is None,
        peak_at=peak_at,
        recovered_after=recovered_after,
    )


def _recovered_at(series: Sequence[Series], since: float, max_s: float) -> float | None:
    per_series = [{t: v for t, v in s.points if t >= since} for s in series]
    last_seen = [max(pts, default=-math.inf) for pts in per_series]
    instants = sorted({t for pts in per_series for t in pts})
    recovered: float | None = None
    # walk backwards: the answer is the start of the trailing run of "all under" instants
    for t in reversed(instants):
        under = all(
            (v := pts.get(t)) is not None and v <= max_s  # NaN <= x is False
            for pts, last in zip(per_series, last_seen, strict=True)
            if last >= t
        )
        if not under:
            break
        recovered = t
    return recovered


def canary_lag(
    written_at: float,
    visible_at: Mapping[str, float | None],
    *,
    poll_interval: float,
    gave_up_at: float | None = None,
    source_region: str | None = None,
) -> CanaryLag:
    """Lag of one canary write per target region: first seen minus ``written_at``.

    ``written_at`` is when the source region acknowledged the marker; ``visible_at`` maps
    each polled region to the first instant a poll saw it (None: never). measured is the
    largest lag; a region that never saw the marker contributes ``gave_up_at -
    written_at`` as a lower bound (``details.lowerBound``), or makes the result
    ``no_data`` when ``gave_up_at`` is not known. The error bound is one poll interval.
    """
    by_region = {
        region: (None if seen is None else max(0.0, seen - written_at))
        for region, seen in visible_at.items()
    }
    missing = sorted(r for r, lag in by_region.items() if lag is None)
    lags = [lag for lag in by_region.values() if lag is not None]
    if missing and gave_up_at is not None:
        lags.append(max(0.0, gave_up_at - written_at))
    no_data = not visible_at or (bool(missing) and gave_up_at is None)
    return CanaryLag(
        measured=max(lags) if lags else None,
        unit="s",
        source=CANARY,
        error_bound_seconds=poll_interval,
        details={
            "sourceRegion": source_region,
            "writtenAt": written_at,
            "byRegion": dict(by_region),
            "notVisible": missing,
            "lowerBound": bool(missing),
        },
        no_data=no_data,
        by_region=by_region,
    )


#: one canary-lag sample of a link: (when, lag seconds, error bound seconds)
CanaryPoint = tuple[float, float, float]


def canary_replication_lag(
    links: Mapping[str, Sequence[CanaryPoint]],
    fault_start: float,
    fault_end: float,
    *,
    max_s: float,
    recover_within: float | None = None,
) -> ReplicationLag:
    """replicationLag from datastore canaries: the peak canary lag over every link from
    the start of the fault until the lag is back under ``max_s`` (a canary written during
    the fault and seen after the revert still measures the fault's lag), and how long
    after the revert that took.

    A link's sample is the largest lag of the canaries one poll saw, or the age of the
    oldest canary still pending (a lower bound, growing while a link is cut). The error
    bound is that of the peak sample (half a poll interval plus query times).
    """
    if fault_end < fault_start:
        raise ValueError("fault_end is before fault_start")
    recovered_at = _links_recovered_at(links, fault_end, max_s)
    until = recovered_at if recovered_at is not None else math.inf
    peak: CanaryPoint | None = None
    peak_link = ""
    for name, points in links.items():
        for point in points:
            if fault_start <= point[0] <= until and (peak is None or point[1] > peak[1]):
                peak, peak_link = point, name
    recovered_after = None if recovered_at is None else max(0.0, recovered_at - fault_end)
    in_time = None
    if recover_within is not None:
        in_time = recovered_after is not None and recovered_after <= recover_within
    details: dict[str, Any] = {
        "faultStart": fault_start,
        "faultEnd": fault_end,
        "max": max_s,
        "peakAt": peak[0] if peak else None,
        "peakLink": peak_link or None,
        "links": len(links),
        "recoveredAt": recovered_at,
        "recoveredAfter": recovered_after,
        "recoverWithin": recover_within,
        "recoveredInTime": in_time,
    }
    if peak is None:
        details["reason"] = "no canary lag during the fault window"
    return ReplicationLag(
        measured=peak[1] if peak else None,
        unit="s",
        source=CANARY,
        error_bound_seconds=peak[2] if peak else None,
        details=details,
        no_data=peak is None,
        peak_at=peak[0] if peak else None,
        recovered_after=recovered_after,
    )


def _links_recovered_at(
    links: Mapping[str, Sequence[CanaryPoint]], since: float, max_s: float
) -> float | None:
    """The first instant after ``since`` from which every link's samples stay under
    ``max_s`` (links sample at instants of their own); None if some link never gets back."""
    recovered = since
    for points in links.values():
        after = [(t, v) for t, v, _ in points if t >= since]
        start: float | None = None
        for t, v in reversed(after):
            if not v <= max_s:  # NaN is not under
                break
            start = t
        if after and start is None:
            return None
        if start is not None:
            recovered = max(recovered, start)
    return recovered
