"""Compact, append-only records of a traffic run: per-request samples and acked writes.

A run at 20,000 req/s for ten minutes is 12 million requests; as ``Sample`` objects that is
gigabytes. Here each request costs about 30 bytes in parallel ``array`` columns, and
``Sample`` / ``AckedWrite`` objects are built only when somebody asks for them.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from chaosaa.model import AckedWrite, Sample

#: why a request failed; index 0 means "no error". ``status`` and ``body``: the probe
#: rejected the answer (an HTTP probe's unexpected status code or body)
ERROR_CLASSES: tuple[str, ...] = (
    "timeout",
    "connect",
    "reset",
    "overload",
    "protocol",
    "status",
    "body",
)
_ERROR_CODE: dict[str | None, int] = {None: 0} | {e: i + 1 for i, e in enumerate(ERROR_CLASSES)}
_ERROR_NAME: list[str | None] = [None, *ERROR_CLASSES]

#: more distinct region names than this (a misbehaving server) share one overflow name
MAX_REGIONS = 250
OVERFLOW_REGION = "?"


class RegionTable:
    """Interns region names to small integers (0 = no region)."""

    def __init__(self, known: Sequence[str] = ()) -> None:
        self.names: list[str | None] = [None]
        self._index: dict[str | None, int] = {None: 0}
        for name in known:
            self.index(name)

    def index(self, name: str | None) -> int:
        i = self._index.get(name)
        if i is not None:
            return i
        if len(self.names) > MAX_REGIONS:
            return self.index(OVERFLOW_REGION) if name != OVERFLOW_REGION else len(self.names) - 1
        i = len(self.names)
        self.names.append(name)
        self._index[name] = i
        return i


@dataclass(slots=True)
class SampleLog:
    """One row per request, in completion order."""

    regions: RegionTable
    sent_at: array[float] = field(default_factory=lambda: array("d"))
    latency: array[float] = field(default_factory=lambda: array("d"))
    #: actual send instant minus scheduled instant; NaN when the request was never sent
    send_error: array[float] = field(default_factory=lambda: array("d"))
    status: array[int] = field(default_factory=lambda: array("H"))
    region: array[int] = field(default_factory=lambda: array("B"))
    home: array[int] = field(default_factory=lambda: array("B"))
    write: array[int] = field(default_factory=lambda: array("B"))
    error: array[int] = field(default_factory=lambda: array("B"))

    def __len__(self) -> int:
        return len(self.sent_at)

    def append(
        self,
        sent_at: float,
        latency: float,
        send_error: float,
        status: int,
        region: int,
        home: int,
        write: bool,
        error: str | None,
    ) -> None:
        self.sent_at.append(sent_at)
        self.latency.append(latency)
        self.send_error.append(send_error)
        self.status.append(status)
        self.region.append(region)
        self.home.append(home)
        self.write.append(write)
        self.error.append(_ERROR_CODE[error])

    def samples(self) -> list[Sample]:
        """Every request as a ``Sample``, ordered by send instant."""
        names = self.regions.names
        out = [
            Sample(
                sent_at=self.sent_at[i],
                latency=self.latency[i],
                status=self.status[i],
                region=names[self.region[i]],
                home=names[self.home[i]],
                write=bool(self.write[i]),
                error=_ERROR_NAME[self.error[i]],
                send_error=None if math.isnan(e := self.send_error[i]) else e,
            )
            for i in range(len(self.sent_at))
        ]
        out.sort(key=_by_sent_at)
        return out

    def send_errors(self) -> list[float]:
        """Send-time error (actual - scheduled, seconds) of every request actually sent."""
        return [e for e in self.send_error if not math.isnan(e)]

    def extend(self, other: SampleLog) -> None:
        """Append ``other``'s rows (another worker's), re-interning its region names."""
        self.sent_at.extend(other.sent_at)
        self.latency.extend(other.latency)
        self.send_error.extend(other.send_error)
        self.status.extend(other.status)
        self.region.frombytes(_reindex(other.region, other.regions, self.regions))
        self.home.frombytes(_reindex(other.home, other.regions, self.regions))
        self.write.extend(other.write)
        self.error.extend(other.error)

    def export(self) -> dict[str, object]:
        """Plain data (names and raw columns) to hand to another process."""
        return {"regions": list(self.regions.names[1:])} | {
            name: getattr(self, name).tobytes() for name in _LOG_COLUMNS
        }

    @classmethod
    def load(cls, data: dict[str, object]) -> SampleLog:
        log = cls(RegionTable(_names(data["regions"])))
        for name in _LOG_COLUMNS:
            _frombytes(getattr(log, name), data[name])
        return log


def _by_sent_at(sample: Sample) -> float:
    return sample.sent_at


@dataclass(slots=True)
class WriteLedger:
    """Every write the system acknowledged with a 2xx, in acknowledgement order.

    Keys are ``k{n}`` and values ``{run_id}:{seq}``; both are stored as integers.
    """

    run_id: str
    regions: RegionTable
    key: array[int] = field(default_factory=lambda: array("L"))
    seq: array[int] = field(default_factory=lambda: array("Q"))
    sent_at: array[float] = field(default_factory=lambda: array("d"))
    acked_at: array[float] = field(default_factory=lambda: array("d"))
    region: array[int] = field(default_factory=lambda: array("B"))

    def __len__(self) -> int:
        return len(self.seq)

    def append(self, key: int, seq: int, sent_at: float, acked_at: float, region: int) -> None:
        self.key.append(key)
        self.seq.append(seq)
        self.sent_at.append(sent_at)
        self.acked_at.append(acked_at)
        self.region.append(region)

    def extend(self, other: WriteLedger) -> None:
        self.key.extend(other.key)
        self.seq.extend(other.seq)
        self.sent_at.extend(other.sent_at)
        self.acked_at.extend(other.acked_at)
        self.region.frombytes(_reindex(other.region, other.regions, self.regions))

    def export(self) -> dict[str, object]:
        return {"regions": list(self.regions.names[1:])} | {
            name: getattr(self, name).tobytes() for name in _LEDGER_COLUMNS
        }

    @classmethod
    def load(cls, run_id: str, data: dict[str, object]) -> WriteLedger:
        ledger = cls(run_id, RegionTable(_names(data["regions"])))
        for name in _LEDGER_COLUMNS:
            _frombytes(getattr(ledger, name), data[name])
        return ledger

    def acked_writes(self) -> list[AckedWrite]:
        names = self.regions.names
        return [
            AckedWrite(
                key=key_name(self.key[i]),
                value=write_value(self.run_id, self.seq[i]),
                sent_at=self.sent_at[i],
                acked_at=self.acked_at[i],
                region=names[self.region[i]],
            )
            for i in range(len(self.seq))
        ]


_LOG_COLUMNS = ("sent_at", "latency", "send_error", "status", "region", "home", "write", "error")
_LEDGER_COLUMNS = ("key", "seq", "sent_at", "acked_at", "region")


def _reindex(column: array[int], source: RegionTable, target: RegionTable) -> bytes:
    """``column`` (region numbers of ``source``) as region numbers of ``target``."""
    table = bytearray(range(256))
    for i, name in enumerate(source.names):
        table[i] = target.index(name)
    return column.tobytes().translate(table)


def _names(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("region names must be a list of strings")
    return value


def _frombytes(column: array[int] | array[float], value: object) -> None:
    if not isinstance(value, bytes):
        raise TypeError("a column must be bytes")
    column.frombytes(value)


def key_name(n: int) -> str:
    """Name of the n-th key of the bounded key space."""
    return f"k{n}"


def write_value(run_id: str, seq: int) -> str:
    """The unique value a write carries. ``seq`` is the request's position in the
    schedule, so within one run a larger ``seq`` was sent later."""
    return f"{run_id}:{seq}"


def parse_write_value(value: str) -> tuple[str, int] | None:
    """``(run_id, seq)`` of a value written by the generator, None for anything else."""
    run_id, sep, seq = value.rpartition(":")
    if not sep or not seq.isdigit():
        return None
    return run_id, int(seq)
