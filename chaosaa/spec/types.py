"""Building blocks of the GameDay models: the strict base model, durations, rates,
comparisons, names."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel

from chaosaa.durations import format_duration, parse_duration

DURATION_PATTERN = r"^(0|(\d+(\.\d+)?(ms|s|m|h|d))+)$"
#: no duration of a GameDay is longer than a day (the traffic generator's bound too)
MAX_DURATION = 86_400.0
#: 1 tbit/s: beyond any link a GameDay shapes
MAX_RATE = 1e12


def _duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 10s, not a boolean")
    if isinstance(value, int | float):
        if value == 0:
            return 0.0
        shown = f"{value:g}" if isinstance(value, float) else str(value)[:20]
        raise ValueError(f"{shown} has no unit: write e.g. {shown}s or {shown}ms")
    if not isinstance(value, str):
        raise ValueError("must be a duration string such as 250ms, 10s, 5m")
    seconds = parse_duration(value)
    if seconds > MAX_DURATION:
        raise ValueError(f"{value[:40]!r} is longer than a GameDay may run (at most 24h)")
    return seconds


#: Seconds, read from ``250ms``/``10s``/``5m``/``1h``; written back as a string.
Duration = Annotated[
    float,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]

_RATE_UNITS = {
    "bit": 1.0,
    "kbit": 1e3,
    "mbit": 1e6,
    "gbit": 1e9,
    "bps": 8.0,
    "kbps": 8e3,
    "mbps": 8e6,
    "gbps": 8e9,
}
RATE_PATTERN = r"^\d+(\.\d+)?(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$"


def parse_rate(text: str) -> float:
    """Return bits per second for tc-style rates (``64kbit``, ``1mbit``, ``10kbps`` = bytes)."""
    m = re.fullmatch(
        r"(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)", text.strip().lower()
    )
    if not m:
        raise ValueError(
            f"{text!r} is not a rate: use a number and a unit (bit, kbit, mbit, gbit; "
            "bps, kbps, mbps for bytes), e.g. 64kbit or 1mbit"
        )
    bits = float(m.group(1)) * _RATE_UNITS[m.group(2)]
    if bits <= 0:
        raise ValueError(f"{text[:40]!r}: rate must be > 0")
    if bits > MAX_RATE:
        raise ValueError(f"{text[:40]!r}: rate must be <= 1000gbit")
    return bits


def _rate(value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError("must be a rate string such as 64kbit or 1mbit")
    return parse_rate(value)


def _format_rate(bits: float) -> str:
    for unit, factor in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bits >= factor and (bits / factor).is_integer():
            return f"{int(bits / factor)}{unit}"
    return f"{bits:g}bit"


#: Bits per second, read from tc-style strings.
Rate = Annotated[
    float,
    BeforeValidator(_rate),
    PlainSerializer(_format_rate, return_type=str),
    WithJsonSchema({"type": "string", "pattern": RATE_PATTERN}),
]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
EXPECT_PATTERN = r"^\s*(>=|<=|==|!=|>|<)\s*-?\d+(\.\d+)?([eE][-+]?\d+)?\s*$"


@dataclass(frozen=True)
class Expectation:
    """A comparison and a number, e.g. ``>= 0.99``."""

    op: str
    value: float

    def holds(self, measured: float) -> bool:
        return _OPS[self.op](measured, self.value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


def parse_expect(text: str) -> Expectation:
    m = re.fullmatch(r"\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*", text)
    if not m:
        raise ValueError(
            f"{text!r} is not an expectation: write a comparison and a number, "
            "e.g. '>= 0.99' or '< 5'"
        )
    value = float(m.group(2))
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]!r}: the number is too large")
    return Expectation(m.group(1), value)


def _expect(value: Any) -> Expectation:
    if isinstance(value, Expectation):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string such as '>= 0.99' (quote it in YAML)")
    return parse_expect(value)


Expect = Annotated[
    Expectation,
    BeforeValidator(_expect),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": EXPECT_PATTERN}),
]

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
REGION_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"


class Model(BaseModel):
    """Strict base: unknown fields are errors, YAML uses camelCase."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        # every number must be finite: an objective of inf can never fail
        allow_inf_nan=False,
    )


RegionName = Annotated[str, Field(pattern=REGION_PATTERN)]
#: a directed link between two regions: [source, target]
Link = Annotated[list[RegionName], Field(min_length=2, max_length=2)]
