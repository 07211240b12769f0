"""Load profiles: how many requests per second each home region sends, over time, and the
instant each request is due.

A profile is a piecewise-linear rate ``r(t) >= 0`` (requests per second, ``t`` in seconds
from the start of traffic) built from stages: ``constant`` holds a rate, ``ramp`` changes it
linearly, ``step`` climbs a staircase. After the last stage its final rate holds until the
traffic stops. The ``k``-th request of a stream is due where the cumulative count
``C(t) = integral of r from 0 to t`` reaches ``k + phase``: an open-loop schedule that
follows the shape exactly, whatever the system answers.

A *stream* is one profile and the homes it claims round-robin. ``traffic.rate`` (and
``traffic.stages``) over ``homes`` is one stream, the way chaosaa always sent; ``traffic.load``
gives each home a stream of its own, phase-shifted so that equal rates interleave instead
of arriving in bursts. Worker ``w`` of ``n`` sends requests ``k = w, w + n, w + 2n, ...`` of
every stream, so the union of the workers is the schedule.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chaosaa.durations import format_duration

if TYPE_CHECKING:  # worker processes unpickle plans without loading the GameDay models
    from chaosaa.spec.traffic import Stage, Traffic


@dataclass(frozen=True, slots=True)
class Segment:
    """The rate goes linearly from ``r0`` to ``r1`` over ``[start, start + duration)``."""

    start: float
    duration: float  # math.inf for the rate that holds after the last stage
    r0: float
    r1: float

    @property
    def count(self) -> float:
        """Requests due within the segment (inf for a held rate above zero)."""
        if math.isinf(self.duration):
            return math.inf if self.r0 > 0 else 0.0
        return (self.r0 + self.r1) / 2 * self.duration

    def rate_at(self, t: float) -> float:
        if math.isinf(self.duration):
            return self.r0
        return self.r0 + (self.r1 - self.r0) * (t - self.start) / self.duration

    def offset_of(self, c: float) -> float:
        """Seconds into the segment at which ``c`` (< count) requests have become due."""
        if c <= 0:
            return 0.0
        if self.r0 == self.r1:
            return c / self.r0
        # r0 t + (r1 - r0) / (2 D) t^2 = c, in the form that is stable when r0 = 0
        slope = (self.r1 - self.r0) / self.duration
        return 2 * c / (self.r0 + math.sqrt(max(0.0, self.r0 * self.r0 + 2 * slope * c)))


@dataclass(frozen=True, slots=True)
class Stream:
    """Requests that follow one profile; ``homes`` are claimed round-robin (None: none)."""

    homes: tuple[str | None, ...]
    segments: tuple[Segment, ...]
    phase: float = 0.0  # in [0, 1): where in its first gap the stream starts

    def rate_at(self, t: float) -> float:
        for seg in reversed(self.segments):
            if t >= seg.start:
                return seg.rate_at(t)
        return 0.0

    @property
    def peak_rate(self) -> float:
        return max(max(s.r0, s.r1) for s in self.segments)

    def count_until(self, t: float) -> float:
        """Requests due in ``[0, t)`` (before the phase shift)."""
        total = 0.0
        for seg in self.segments:
            if t <= seg.start:
                break
            end = min(t, seg.start + seg.duration)
            total += (seg.r0 + seg.rate_at(end)) / 2 * (end - seg.start)
        return total

    def offsets(self, first: int, every: int, span: float) -> Iterator[tuple[float, int]]:
        """``(seconds from start, k)`` of requests ``k = first, first + every, ...`` due
        before ``span``, in order."""
        segs = self.segments
        i, before = 0, 0.0  # segs[i] starts after ``before`` requests
        k = first
        while True:
            c = k + self.phase
            while i < len(segs) and c >= before + segs[i].count:
                before += segs[i].count
                i += 1
            if i == len(segs):
                return
            seg = segs[i]
            t = seg.start + seg.offset_of(c - before)
            if t >= span:
                return
            yield t, k
            k += every


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Every stream of a run. Picklable: worker processes get a copy."""

    streams: tuple[Stream, ...]

    @property
    def homes(self) -> list[str | None]:
        return [h for s in self.streams for h in s.homes]

    @property
    def peak_rate(self) -> float:
        """An upper bound of the total rate at any instant (the sum of stream peaks)."""
        return sum(s.peak_rate for s in self.streams)

    def rate_at(self, t: float) -> float:
        return sum(s.rate_at(t) for s in self.streams)

    def rate_by_home(self, t: float) -> dict[str | None, float]:
        out: dict[str | None, float] = {}
        for s in self.streams:
            for home in s.homes:
                out[home] = out.get(home, 0.0) + s.rate_at(t) / len(s.homes)
        return out

    def expected_by_home(self, start: float, end: float) -> dict[str | None, float]:
        """Requests each home is due to send in ``[start, end)`` seconds from traffic start."""
        out: dict[str | None, float] = {}
        for s in self.streams:
            n = (s.count_until(end) - s.count_until(start)) / len(s.homes)
            for home in s.homes:
                out[home] = out.get(home, 0.0) + n
        return out

    def schedule(
        self, worker: int = 0, workers: int = 1, span: float = math.inf
    ) -> Iterator[tuple[float, int, int]]:
        """``(seconds from start, seq, home index)`` of worker ``worker``'s requests, in
        time order. ``seq`` is unique in the run and grows with the due instant (its
        microsecond, then the stream), so a write's value tells when it was scheduled."""
        if not 0 <= worker < workers:
            raise ValueError(f"worker {worker} of {workers}")
        n = len(self.streams)
        first_home = [0]
        for s in self.streams:
            first_home.append(first_home[-1] + len(s.homes))

        def tagged(i: int, s: Stream) -> Iterator[tuple[float, int, int]]:
            homes = len(s.homes)
            for t, k in s.offsets(worker, workers, span):
                yield t, round(t * 1e6) * n + i, first_home[i] + k % homes

        iterators = [tagged(i, s) for i, s in enumerate(self.streams)]
        if len(iterators) == 1:
            return iterators[0]
        return heapq.merge(*iterators)

    def describe(self) -> list[str]:
        """One line per stream, e.g. ``eu: 50 req/s, ramp to 200 over 30s (t=0-30s), ...``."""
        return [_describe_stream(s) for s in self.streams]


def constant_plan(rate: float, homes: Sequence[str | None]) -> LoadPlan:
    """``rate`` requests per second in total, homes claimed round-robin (the classic way)."""
    if rate <= 0:
        raise ValueError("rate must be > 0")
    return LoadPlan((Stream(tuple(homes) or (None,), (Segment(0.0, math.inf, rate, rate),)),))


def load_plan(traffic: Traffic, regions: Sequence[str]) -> LoadPlan:
    """The plan of a GameDay's ``spec.traffic``; ``homes`` default to ``regions``."""
    if traffic.load:
        n = len(traffic.load)
        return LoadPlan(
            tuple(
                Stream((home,), segments(load.rate, load.stages), phase=i / n)
                for i, (home, load) in enumerate(traffic.load.items())
            )
        )
    homes: tuple[str | None, ...] = tuple(traffic.homes or regions) or (None,)
    return LoadPlan((Stream(homes, segments(traffic.rate, traffic.stages)),))


def segments(rate: float, stages: Sequence[Stage]) -> tuple[Segment, ...]:
    """Segments of a start rate and its stages; the last rate holds forever."""
    out: list[Segment] = []
    t, current = 0.0, rate
    for stage in stages:
        if stage.type == "constant":
            out.append(Segment(t, stage.duration, stage.rate, stage.rate))
            current = stage.rate
        elif stage.type == "ramp":
            start = current if stage.from_ is None else stage.from_
            out.append(Segment(t, stage.duration, start, stage.to))
            current = stage.to
        elif stage.type == "step":
            start = current if stage.from_ is None else stage.from_
            each = stage.duration / stage.steps
            for k in range(1, stage.steps + 1):
                level = start + (stage.to - start) * k / stage.steps
                out.append(Segment(t + (k - 1) * each, each, level, level))
            current = stage.to
        else:  # pragma: no cover - the union is closed
            raise TypeError(f"unknown stage {stage!r}")
        t += stage.duration
    out.append(Segment(t, math.inf, current, current))
    return tuple(out)


def _describe_stream(stream: Stream) -> str:
    homes = ", ".join(h or "-" for h in stream.homes)
    parts: list[str] = []
    for seg in stream.segments:
        if math.isinf(seg.duration):
            if len(stream.segments) == 1:
                parts.append(f"{seg.r0:g} req/s")
            else:
                parts.append(f"then {seg.r0:g} req/s until the end")
            continue
        window = f"(t={format_duration(seg.start)}-{format_duration(seg.start + seg.duration)})"
        if seg.r0 == seg.r1:
            parts.append(f"{seg.r0:g} req/s {window}")
        else:
            parts.append(f"{seg.r0:g}->{seg.r1:g} req/s {window}")
    shared = " shared round-robin" if len(stream.homes) > 1 else ""
    return f"{homes}{shared}: " + ", ".join(parts)
