"""Plain data recorded during a run, shared by traffic, measure, report and engine.

All instants are unix seconds (UTC wall clock, float). Producers that time with a
monotonic clock convert once, through a single anchor, so differences stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Sample:
    """One request of the traffic generator."""

    sent_at: float  # when the request was sent (scheduled send time + send error)
    latency: float  # seconds until the response or the failure
    status: int  # HTTP status; 0 = transport error or timeout
    region: str | None  # serving region (response header X-Chaosaa-Region)
    home: str | None  # home region the client claimed (X-Chaosaa-Home)
    write: bool
    error: str | None = None  # why it failed, e.g. "timeout", "connect", "status" (unexpected)
    #: actual minus scheduled send instant (None: never sent, e.g. an overload)
    send_error: float | None = None

    @property
    def ok(self) -> bool:
        """Served: any answer below 500 (a 404 read of a missing key is a correct answer)
        that the probe did not reject (an HTTP probe's unexpected status or body)."""
        return self.error is None and 0 < self.status < 500


@dataclass(slots=True)
class AckedWrite:
    """A write the system acknowledged (2xx); lostWrites reads every one back."""

    key: str
    value: str
    sent_at: float
    acked_at: float
    region: str | None


@dataclass(frozen=True)
class Series:
    """One Prometheus series: labels and (unix seconds, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)
