"""How report numbers and instants are written, the same in JSON, JUnit, HTML and console."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def format_instant(ts: float) -> str:
    """Unix seconds -> ``2026-11-26T10:00:00.000Z`` (UTC, milliseconds)."""
    millis = round(ts * 1000)
    moment = datetime.fromtimestamp(millis // 1000, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"


def parse_instant(text: str) -> float:
    """ISO-8601 (``Z`` or an offset) -> unix seconds, rounded to the millisecond.

    Raises ``ValueError`` for anything else, including times without a zone: a report
    instant is always UTC and must say so.
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; write e.g. 2026-11-26T10:00:00.000Z")
    return round(moment.timestamp() * 1000) / 1000


def format_seconds(value: float | None) -> str:
    """A duration for people: ``12ms``, ``4.21s``, ``1m05s``; ``-`` when unknown."""
    if value is None or not math.isfinite(value):
        return "-"
    sign = "-" if value < 0 else ""
    v = abs(value)
    if v == 0:
        return "0s"
    if v < 1:
        return f"{sign}{v * 1000:.3g}ms"
    if v < 60:
        return f"{sign}{v:.3g}s"
    minutes, seconds = divmod(round(v), 60)
    return f"{sign}{minutes}m{seconds:02d}s" if seconds else f"{sign}{minutes}m"


def format_number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def format_measured(value: float | None, unit: str) -> str:
    """A measured value with its unit: seconds humanised, ratios as percent."""
    if value is None or not math.isfinite(value):
        return "no data"
    if unit == "s":
        return format_seconds(value)
    if unit == "ratio":
        return f"{value * 100:.3g}%"
    number = format_number(value)
    return f"{number} {unit}" if unit else number


def format_bound(seconds: float | None) -> str:
    """The error bound of a measured time: ``±20ms``; empty when there is none."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    return f"±{format_seconds(seconds)}"


def format_offset(ts: float | None, origin: float) -> str:
    """An instant relative to the start of the run: ``+12.345s``."""
    if ts is None:
        return "-"
    return f"{ts - origin:+.3f}s"


def by_region(details: Mapping[str, Any]) -> str:
    """A latency SLO's percentile per serving region with its sample count and its value
    before the faults: ``us 60ms (n=3798, before 20ms) · ap 120ms (n=1999)``; empty when
    the details hold none."""
    regions = details.get("byRegion")
    if not isinstance(regions, Mapping) or not regions:
        return ""
    parts = []
    for region, d in regions.items():
        if not isinstance(d, Mapping) or "samples" not in d:
            return ""  # another SLO's breakdown (an error rate's requests and errors)
        inside = [f"n={d.get('samples', 0)}"]
        if d.get("before") is not None:
            inside.append(f"before {format_seconds(d['before'])}")
        value = d.get("value")
        shown = format_seconds(value) if value is not None else "failed"
        parts.append(f"{region} {shown} ({', '.join(inside)})")
    return " · ".join(parts)


def below_resolution(measured: float | None, unit: str, bound: float | None) -> bool:
    """A time smaller than its own error bound: its source cannot tell it from zero (a
    1.7 s outage read from 1 s scrapes may come out as 0 s ±4 s)."""
    return unit == "s" and measured is not None and bound is not None and measured < bound


def format_figure(measured: float | None, unit: str, bound: float | None) -> str:
    """A measured value with its error bound; a time below its bound says so instead of
    reading as a small number (``0s ±4s`` would read as "no outage")."""
    if below_resolution(measured, unit, bound):
        return f"below resolution (< {format_seconds(bound)})"
    text = format_measured(measured, unit)
    b = format_bound(bound)
    return f"{text} {b}" if b and measured is not None else text
