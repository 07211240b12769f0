"""Scheduling without a cluster: slots, deadlines, run names, and firing exactly once."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaosaa.errors import InvalidInputError
from chaosaa.operator.clock import Clock
from chaosaa.operator.schedule import (
    count_slots,
    decide,
    latest_slot,
    manual_run_name,
    next_slot,
    run_name,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
DAYS = 86400.0

# cron expressions whose slots a few lines of Python can enumerate independently
MINUTES = st.sampled_from(["*", "*/5", "*/15", "0", "7", "30", "0,30", "10-12"])
HOURS = st.sampled_from(["*", "*/2", "3", "10", "0-5"])
CRONS = st.builds(lambda m, h: f"{m} {h} * * *", MINUTES, HOURS)
INSTANTS = st.floats(min_value=T0, max_value=T0 + 20 * DAYS, allow_nan=False)


def _field(spec: str, value: int) -> bool:
    for part in spec.split(","):
        if part == "*":
            return True
        if part.startswith("*/"):
            if value % int(part[2:]) == 0:
                return True
        elif "-" in part:
            lo, hi = map(int, part.split("-"))
            if lo <= value <= hi:
                return True
        elif int(part) == value:
            return True
    return False


def matches(cron: str, instant: float) -> bool:
    """Oracle for the expressions above, in UTC."""
    minute, hour, *_ = cron.split()
    at = datetime.fromtimestamp(instant, UTC)
    return at.second == 0 and _field(minute, at.minute) and _field(hour, at.hour)


def oracle_slots(cron: str, after: float, until: float) -> list[float]:
    first = math.floor(after / 60) * 60 + 60
    return [t for t in range(int(first), int(until) + 1, 60) if matches(cron, t)]


@settings(max_examples=200, deadline=None)
@given(CRONS, INSTANTS)
def test_next_and_latest_slot_agree_with_an_independent_oracle(cron: str, now: float) -> None:
    nxt = next_slot(cron, "UTC", now)
    assert nxt > now and matches(cron, nxt)
    assert oracle_slots(cron, now, nxt - 1) == []  # nothing in between
    prev = latest_slot(cron, "UTC", now)
    assert prev <= now and matches(cron, prev)
    assert oracle_slots(cron, prev, now) == []


@settings(max_examples=200, deadline=None)
@given(CRONS, INSTANTS, st.floats(min_value=0, max_value=3 * DAYS))
def test_count_slots_counts_what_the_oracle_counts(cron: str, after: float, span: float) -> None:
    until = after + span
    assert count_slots(cron, "UTC", after, until, limit=10_000) == len(
        oracle_slots(cron, after, until)
    )


@settings(max_examples=300, deadline=None)
@given(
    CRONS,
    INSTANTS,
    st.floats(min_value=0, max_value=2 * DAYS),
    st.one_of(st.none(), st.integers(min_value=0, max_value=7200)),
)
def test_decide_fires_only_the_latest_slot_within_the_deadline(
    cron: str, since: float, elapsed: float, deadline: int | None
) -> None:
    now = since + elapsed
    d = decide(cron, "UTC", since=since, now=now, deadline=deadline)
    pending = oracle_slots(cron, since, now)
    assert d.next == next_slot(cron, "UTC", now)
    if not pending:
        assert d.due is None and d.missed == 0 and d.too_late is None
        return
    latest = pending[-1]
    if deadline is not None and now - latest > deadline:
        assert d.due is None and d.too_late == latest
        assert d.missed == min(len(pending), 100)
    else:
        assert d.due == latest
        assert d.missed == min(len(pending), 100) - 1
    # once fired (since moves to the slot), the same instant never fires again
    again = decide(cron, "UTC", since=latest, now=now, deadline=deadline)
    assert again.due is None


@settings(max_examples=100, deadline=None)
@given(
    CRONS,
    st.lists(st.floats(min_value=1, max_value=400), min_size=5, max_size=60),
    st.lists(st.booleans(), min_size=60, max_size=60),
    st.lists(st.booleans(), min_size=60, max_size=60),
)
def test_a_simulated_operator_fires_every_slot_once_across_restarts_and_lost_writes(
    cron: str, gaps: list[float], restarts: list[bool], lost_writes: list[bool]
) -> None:
    """The scheduler's loop in miniature: ticks at random times; at random ticks the
    operator restarts (forgets everything but the status) and status writes are lost.
    Runs are keyed by their deterministic name, as the apiserver keys them."""
    deadline = 600  # 10 minutes: ticks are at most 400 s apart, so nothing is too late
    created: dict[str, float] = {}
    create_calls: dict[str, int] = {}
    status_last = T0  # status.lastScheduleTime (creation time at first)
    memory: float | None = None  # what a running operator remembers
    now = T0
    for i, gap in enumerate(gaps):
        now += gap
        if restarts[i]:
            memory = None
        since = max(status_last, memory) if memory is not None else status_last
        d = decide(cron, "UTC", since=since, now=now, deadline=deadline)
        if d.due is not None:
            name = run_name("gd", d.due)
            create_calls[name] = create_calls.get(name, 0) + 1
            created.setdefault(name, d.due)  # AlreadyExists: the first one stays
            memory = d.due
            if not lost_writes[i]:
                status_last = d.due
    # each tick fires the most recent slot before it (older ones in the gap are superseded,
    # as in a CronJob); a restart or a lost status write never fires a slot a second time
    expected = set()
    t = T0
    for gap in gaps:
        t += gap
        passed = oracle_slots(cron, T0, t)
        if passed:
            expected.add(run_name("gd", passed[-1]))
    assert set(created) == expected
    retried = sum(n - 1 for n in create_calls.values())
    assert retried <= sum(restarts) + sum(lost_writes)


def test_deadline_boundary_is_inclusive() -> None:
    slot = datetime(2026, 3, 1, 10, 0, tzinfo=UTC).timestamp()
    assert decide("0 10 * * *", "UTC", since=slot - 1, now=slot + 30, deadline=30).due == slot
    late = decide("0 10 * * *", "UTC", since=slot - 1, now=slot + 31, deadline=30)
    assert late.due is None and late.too_late == slot and late.missed == 1


def test_time_zone_moves_the_slot_and_follows_daylight_saving() -> None:
    # 10:00 in Berlin is 09:00 UTC in winter and 08:00 UTC in summer (DST from 29 March)
    winter = datetime(2026, 3, 27, 12, tzinfo=UTC).timestamp()
    assert (
        latest_slot("0 10 * * *", "Europe/Berlin", winter)
        == datetime(2026, 3, 27, 9, tzinfo=UTC).timestamp()
    )
    summer = datetime(2026, 3, 30, 12, tzinfo=UTC).timestamp()
    assert (
        latest_slot("0 10 * * *", "Europe/Berlin", summer)
        == datetime(2026, 3, 30, 8, tzinfo=UTC).timestamp()
    )


def test_run_names_are_deterministic_per_slot_and_distinct_per_minute() -> None:
    slot = datetime(2026, 11, 26, 10, 0, tzinfo=UTC).timestamp()
    assert run_name("region-down", slot) == run_name("region-down", slot + 59)
    assert run_name("region-down", slot) == f"region-down-{int(slot) // 60}"
    assert run_name("region-down", slot) != run_name("region-down", slot + 60)
    assert manual_run_name("gd", "a") == manual_run_name("gd", "a") != manual_run_name("gd", "b")
    assert manual_run_name("gd", "a").startswith("gd-manual-")


def test_a_scaled_clock_is_continuous_across_restarts() -> None:
    clock = Clock.parse("scale=6,anchor=1000")
    assert clock.from_wall(1000) == 1000
    assert clock.from_wall(1010) == 1060  # ten wall seconds are a minute
    assert Clock.parse("scale=6,anchor=1000").from_wall(1020) == clock.from_wall(1020)
    assert clock.wall_seconds(60) == 10
    assert Clock.parse("").is_wall and Clock.parse(None).now() == pytest.approx(
        Clock().now(), abs=1
    )


@pytest.mark.parametrize("text", ["scale=0", "speed=2", "scale=fast", "anchor"])
def test_a_bad_clock_setting_is_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        Clock.parse(text)
