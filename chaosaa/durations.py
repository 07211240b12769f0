"""Go/Prometheus style durations: ``250ms``, ``10s``, ``1m30s``, ``1h``."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(text: str) -> float:
    """Return seconds for a duration string; raise ``ValueError`` with a reason."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    if s.startswith("-"):
        raise ValueError(f"{text!r} is negative; durations must be >= 0")
    if s == "0":
        return 0.0
    if not _WHOLE.fullmatch(s):
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit (ms, s, m, h, d), "
            "e.g. 250ms, 10s, 1m30s"
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(s))
    if not math.isfinite(seconds):
        raise ValueError(f"{text[:40]!r}: too large to be a duration")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds compactly: 0.25 -> '250ms', 90 -> '1m30s'."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    frac = seconds - whole
    if frac > 1e-9:
        return f"{seconds:g}s"
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s or not (h or m) else "")
    return out
