"""The latency SLO and windowed error rate, judged from made-up probe samples: the window
(a fault's, after settle, or the run), overall or per region, the comparison with the
warm-up before the faults, and no data that is never a pass."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from chaosaa.engine.faults import FaultRecord
from chaosaa.engine.slo import SLOContext, evaluate_slo
from chaosaa.model import Sample
from chaosaa.report.model import SLOResult
from chaosaa.spec.loader import load_gameday_text
from chaosaa.spec.model import SLO, GameDaySpec
from chaosaa.targets.base import Endpoints

GAMEDAY = """\
apiVersion: chaosaa.io/v1alpha1
kind: GameDay
metadata: {name: survivors}
spec:
  target: {kind: lab, regions: {us: {}, eu: {}, ap: {}}}
  traffic: {rate: 300, warmup: 4s}
  faults:
    - {name: eu-down, type: regionDown, regions: [eu], after: 1s, duration: 20s}
  slos:
%s
"""

#: injection starts at 100 s; eu-down requested at 101, in place at 101.01, reverted at 121
INJECTION, REQUESTED, EFFECTIVE, REVERTED = 100.0, 101.0, 101.01, 121.0


def spec_with(*slos: str) -> GameDaySpec:
    body = "\n".join(f"    - {s}" for s in slos)
    return load_gameday_text(GAMEDAY % body, "survivors.yaml").spec


def requests(
    start: float, end: float, rate: float, region: str | None, home: str, seconds: float
) -> list[Sample]:
    n = round((end - start) * rate)
    status = 200 if region is not None else 0
    error = None if region is not None else "timeout"
    return [
        Sample(start + i / rate, seconds, status, region, home, False, error, 0.0005)
        for i in range(n)
    ]


def traffic(during_ap: float = 0.120, transient: bool = True) -> list[Sample]:
    """100 req/s per home; 20 ms everywhere before eu goes down; then us and ap serve eu's
    clients too, us at 60 ms and ap at ``during_ap``; eu's requests time out for the
    first 2 s of the fault (the failover)."""
    out: list[Sample] = []
    for home in ("us", "eu", "ap"):
        out += requests(96.0, EFFECTIVE, 100, home, home, 0.020)
        out += requests(REVERTED, 130.0, 100, home, home, 0.020)
    out += requests(EFFECTIVE, REVERTED, 100, "us", "us", 0.060)
    out += requests(EFFECTIVE, REVERTED, 100, "ap", "ap", during_ap)
    fail_until = EFFECTIVE + (2.0 if transient else 0.0)
    out += requests(EFFECTIVE, fail_until, 100, None, "eu", 1.0)
    out += requests(fail_until, REVERTED, 100, "us", "eu", 0.060)
    return sorted(out, key=lambda s: s.sent_at)


def judge(spec: GameDaySpec, samples: Iterable[Sample], effective: bool = True) -> SLOResult:
    record = FaultRecord(
        spec.faults[0],
        requested_at=REQUESTED,
        effective_at=EFFECTIVE if effective else None,
        reverted_at=REVERTED if effective else None,
    )
    ctx = SLOContext(
        spec=spec,
        prom=None,
        endpoints=Endpoints(entry_url="http://router"),
        faults=[record],
        samples=list(samples),
        acked=[],
        lost_writes=0,
        divergent_keys=0,
        end=130.0,
        rate=300.0,
        start=INJECTION,
    )
    slo: SLO = spec.slos[0]
    return asyncio.run(evaluate_slo(slo, ctx))


def test_p99_during_the_fault_fails_over_its_objective_and_passes_under_it() -> None:
    slow = judge(spec_with("{name: p99, type: latency, max: 100ms}"), traffic(during_ap=0.120))
    assert slow.verdict == "failed"
    assert slow.measured == pytest.approx(0.120)
    assert slow.objective == "p99 <= 100ms during the faults"
    assert slow.unit == "s" and slow.source == "probe"
    fast = judge(spec_with("{name: p99, type: latency, max: 100ms}"), traffic(during_ap=0.080))
    assert fast.verdict == "passed"
    assert fast.measured == pytest.approx(0.080)
    assert fast.error_bound_seconds is not None and fast.error_bound_seconds < 0.02


def test_the_report_gives_each_regions_sample_count_and_its_value_before() -> None:
    result = judge(spec_with("{name: p99, type: latency, max: 100ms}"), traffic())
    by_region = result.details["byRegion"]
    assert set(by_region) == {"us", "ap"}  # eu served nothing while it was down
    assert by_region["us"]["samples"] == 2 * 1999 - 200  # its own and eu's clients
    assert by_region["us"]["value"] == pytest.approx(0.060)
    assert by_region["us"]["before"] == pytest.approx(0.020)
    assert result.details["change"]["99"]["before"] == pytest.approx(0.020)
    assert result.details["changeByRegion"]["ap"]["99"]["ratio"] == pytest.approx(6.0)
    baseline = result.details["baseline"]
    assert baseline["start"] == pytest.approx(INJECTION - 2.0)  # the warm-up's second half
    assert baseline["end"] == pytest.approx(REQUESTED)


def test_per_region_measures_the_slowest_region() -> None:
    spec = spec_with("{name: p99, type: latency, max: 100ms, perRegion: true}")
    result = judge(spec, traffic(during_ap=0.120))
    assert result.verdict == "failed" and result.measured == pytest.approx(0.120)
    assert result.details["slowestRegion"] == "ap"
    assert result.objective == "p99 <= 100ms in every region during the faults"


def test_a_region_too_thin_to_bound_its_p99_is_unknown_unless_another_fails() -> None:
    thin = [s for s in traffic(during_ap=0.080) if not (s.region == "ap" and s.sent_at > 103)]
    spec = spec_with("{name: p99, type: latency, max: 100ms, perRegion: true}")
    result = judge(spec, thin)
    assert result.verdict == "unknown" and result.fails_run
    assert "too few requests to bound p99 in ap" in result.details["reason"]
    slow = judge(spec_with("{name: p99, type: latency, max: 50ms, perRegion: true}"), thin)
    assert slow.verdict == "failed"  # us at 60 ms fails whatever ap's p99 is


def test_homes_measure_one_regions_clients_wherever_they_are_served() -> None:
    spec = spec_with("{name: p99, type: latency, max: 100ms, homes: [eu]}")
    result = judge(spec, traffic(during_ap=0.300))
    assert result.verdict == "passed" and result.measured == pytest.approx(0.060)


def test_settle_leaves_the_failover_out_of_the_error_rate() -> None:
    whole = judge(spec_with("{name: e, type: errorRate, max: 0.01, window: faults}"), traffic())
    assert whole.verdict == "failed"
    assert whole.measured == pytest.approx(200 / 6000, rel=0.01)
    settled = judge(
        spec_with("{name: e, type: errorRate, max: 0.01, window: faults, settle: 3s}"), traffic()
    )
    assert settled.verdict == "passed" and settled.measured == 0
    assert settled.objective == "<= 0.01 during the faults from 3s in"
    assert settled.details["settleSeconds"] == 3.0
    run = judge(spec_with("{name: e, type: errorRate, max: 0.01}"), traffic())
    assert run.objective == "<= 0.01" and run.details["windowType"] == "run"


def test_failures_counted_slowest_fail_the_percentile_they_reach() -> None:
    spec = spec_with("{name: p99, type: latency, max: 500ms, failures: slowest}")
    result = judge(spec, traffic())  # 200 of 6000 failed: over 1 %
    assert result.verdict == "failed"
    assert result.measured == 1.0  # shown as the request timeout
    assert "counted as slowest" in result.details["reason"]
    settled = judge(
        spec_with("{name: p99, type: latency, max: 500ms, failures: slowest, settle: 3s}"),
        traffic(),
    )
    assert settled.verdict == "passed"


def test_no_fault_in_place_or_no_requests_is_unknown_never_a_pass() -> None:
    spec = spec_with("{name: p99, type: latency, max: 100ms}")
    never = judge(spec, traffic(), effective=False)
    assert never.verdict == "unknown" and never.details["reason"] == "the fault never took effect"
    empty = judge(spec, [])
    assert empty.verdict == "unknown" and empty.measured is None
    ignored = judge(spec_with("{name: p99, type: latency, max: 100ms, onNoData: ignore}"), [])
    assert ignored.verdict == "unknown" and not ignored.fails_run


def test_window_run_covers_the_whole_injection_phase() -> None:
    spec = spec_with("{name: p50, type: latency, percentile: 50, max: 50ms, window: run}")
    result = judge(spec, traffic())
    assert result.objective == "p50 <= 50ms over the run"
    assert result.details["window"]["start"] == INJECTION
    assert "baseline" not in result.details
    assert result.details["windowType"] == "run"


def test_error_rate_scoped_to_homes_counts_only_those_clients() -> None:
    majority = judge(spec_with("{name: e, type: errorRate, max: 0.01, homes: [us, ap]}"), traffic())
    assert majority.verdict == "passed" and majority.measured == 0
    assert majority.details["homes"] == ["ap", "us"]
    assert majority.details["requests"] == 2 * 3000  # us's and ap's clients, nobody else
    eu = judge(spec_with("{name: e, type: errorRate, max: 0.01, homes: [eu]}"), traffic())
    assert eu.verdict == "failed" and eu.measured == pytest.approx(200 / 3000, rel=0.01)


def test_error_rate_scoped_to_serving_regions_keeps_failures_with_their_home() -> None:
    us = judge(spec_with("{name: e, type: errorRate, max: 0.01, regions: [us]}"), traffic())
    assert us.verdict == "passed" and us.measured == 0
    eu = judge(spec_with("{name: e, type: errorRate, max: 0.01, regions: [eu]}"), traffic())
    assert eu.verdict == "failed" and eu.details["errors"] == 200


@pytest.mark.parametrize(
    ("slo", "message"),
    [
        (
            "{name: e, type: errorRate, max: 0.01, homes: [mars]}",
            "spec.slos[0].homes[0]: region 'mars' not in target.regions",
        ),
        (
            "{name: e, type: errorRate, max: 0.01, source: prometheus, homes: [us]}",
            "homes applies to source probe only",
        ),
        (
            "{name: e, type: errorRate, max: 0.01, homes: [us, us, us, us, us, us, us, us, us,"
            " us, us, us, us, us, us, us, us]}",
            "at most 16 items",
        ),
    ],
)
def test_error_rate_scope_is_checked(slo: str, message: str) -> None:
    from chaosaa.errors import SpecError

    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        spec_with(slo)
