"""report.json: the fixed fields of DESIGN.md section 3, round-trips, schema checks."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from chaosaa.engine.faults import FaultRecord
from chaosaa.engine.reporting import fault_result, new_report
from chaosaa.engine.verdict import finish, slo_result, steady_state_result
from chaosaa.report.model import (
    ReportFileError,
    RunReport,
    SLOResult,
    load_report,
)
from tests.unit.report_examples import START, example_gameday, example_report

# The example of DESIGN.md section 3, verbatim: every key in it is a fixed field.
DESIGN_EXAMPLE = """
{"schemaVersion": 1, "gameday": "region-down", "verdict": "passed|failed|aborted|error",
 "exitCode": 0, "startedAt": "2026-11-26T10:00:00.000Z", "finishedAt": "...",
 "target": {"kind": "lab", "regions": ["us", "eu", "ap"]},
 "faults": [{"name": "eu-dark", "type": "blackhole", "requestedAt": "...", "effectiveAt": "...",
             "revertedAt": "...", "timeToEffectSeconds": 0.012, "timeToRevertSeconds": 0.004}],
 "steadyState": {"before": [{"name": "...", "value": 0.998, "passed": true}], "after": []},
 "slos": [{"name": "failover", "type": "failoverTime", "objective": "<= 30s",
           "measured": 4.21, "unit": "s", "verdict": "passed|failed|unknown",
           "source": "probe", "errorBoundSeconds": 0.02, "details": {}}],
 "traffic": {"requests": 0, "errors": 0, "byRegion": {}},
 "dataIntegrity": {"acknowledgedWrites": 0, "lost": 0, "divergentKeys": 0, "conflicts": 0},
 "timeline": [{"at": "...", "event": "fault.effective", "detail": {}}]}
"""
ISO_MS_Z = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def _assert_has_keys(expected: Any, actual: Any, path: str = "") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path} is not an object"
        for key, value in expected.items():
            assert key in actual, f"fixed field {path}.{key} is missing"
            if key not in ("details", "detail", "byRegion"):  # free-form maps
                _assert_has_keys(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list) and expected:
        assert isinstance(actual, list) and actual, f"{path} is empty"
        for i, item in enumerate(actual):
            _assert_has_keys(expected[0], item, f"{path}[{i}]")


@pytest.mark.parametrize("outcome", ["passed", "failed"])
def test_report_json_has_every_fixed_field_of_the_design(outcome: str) -> None:
    data = json.loads(example_report(outcome).to_json())  # type: ignore[arg-type]
    _assert_has_keys(json.loads(DESIGN_EXAMPLE), data)
    assert data["schemaVersion"] == 1
    assert data["steadyState"]["after"][0].keys() >= {"name", "value", "passed", "expect"}
    assert data["traffic"]["byRegion"]["eu"].keys() == {"requests", "errors"}


def test_instants_are_iso_utc_with_milliseconds_and_z() -> None:
    data = json.loads(example_report("passed").to_json())
    assert data["startedAt"] == "2026-11-26T10:00:00.000Z"
    fault = data["faults"][0]
    for key in ("requestedAt", "effectiveAt", "revertedAt"):
        assert fault[key] is not None
        assert re.match(ISO_MS_Z, fault[key]), fault[key]
    assert fault["effectiveAt"] == "2026-11-26T10:00:20.012Z"
    assert fault["timeToEffectSeconds"] == pytest.approx(0.012, abs=1e-6)
    assert fault["timeToRevertSeconds"] == pytest.approx(0.004, abs=1e-6)


def test_verdicts_and_exit_codes_follow_the_design() -> None:
    assert (example_report("passed").verdict, example_report("passed").exit_code) == ("passed", 0)
    assert (example_report("failed").verdict, example_report("failed").exit_code) == ("failed", 1)
    aborted = example_report("aborted")
    assert (aborted.verdict, aborted.exit_code) == ("aborted", 3)
    assert aborted.reason and "steady state not met" in aborted.reason


def test_a_fault_never_injected_has_effective_at_null() -> None:
    data = json.loads(example_report("aborted").to_json())
    fault = data["faults"][0]
    assert fault["name"] == "eu-dark"
    assert fault["effectiveAt"] is None
    assert fault["timeToEffectSeconds"] is None


@pytest.mark.parametrize("outcome", ["passed", "failed", "aborted"])
def test_json_round_trips_exactly(outcome: str) -> None:
    text = example_report(outcome).to_json()  # type: ignore[arg-type]
    again = RunReport.from_json(text)
    assert again.to_json() == text
    assert RunReport.from_json(again.to_json()) == again


def test_round_trip_keeps_chart_data_and_extra_fields() -> None:
    report = example_report("failed")
    again = RunReport.from_json(report.to_json())
    assert again.run_id == "region-down-failed"
    assert again.description.startswith("EU goes dark")
    assert set(again.chart.success_ratio) == {"us", "eu", "ap"}
    assert again.chart.success_ratio["us"] == report.chart.success_ratio["us"]
    assert set(again.chart.replication_lag) == {"us->eu", "ap->eu", "eu->us"}
    assert [w.name for w in again.chart.fault_windows] == ["eu-dark"]
    assert again.chart.failover_markers[0].at == pytest.approx(START + 20.012 + 42.0, abs=1e-3)
    assert again.slos[3].on_no_data == "ignore"


def test_nan_is_written_as_null_and_the_report_stays_writable() -> None:
    report = example_report("passed")
    report.slos[0].details["ratio"] = math.nan
    report.steady_state.before[0].value = math.inf
    data = json.loads(report.to_json())
    assert data["slos"][0]["details"]["ratio"] is None
    assert data["steadyState"]["before"][0]["value"] is None


def test_int_given_for_a_float_field_round_trips() -> None:
    report = example_report("passed")
    report.chart.success_ratio["us"] = [(int(START), 1)]
    text = report.to_json()
    assert RunReport.from_json(text).to_json() == text


def test_unknown_fields_are_ignored_within_a_schema_version() -> None:
    data = json.loads(example_report("passed").to_json())
    data["addedLater"] = {"x": 1}
    data["slos"][0]["alsoNew"] = True
    assert RunReport.from_dict(data).gameday == "region-down"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('{"hello": "world"}', "not a chaosaa run report"),
        ("[1, 2]", "not a chaosaa run report"),
        ('{"schemaVersion": 2, "gameday": "x"}', "schemaVersion 2 is not supported"),
        ('{"schemaVersion": 1, "gameday": "x"}', "verdict: missing"),
    ],
)
def test_bad_files_raise_a_clear_error_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "run.json"
    path.write_text(content)
    with pytest.raises(ReportFileError) as err:
        load_report(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_wrong_types_name_the_field_path(tmp_path: Path) -> None:
    data = json.loads(example_report("passed").to_json())
    data["slos"][1]["verdict"] = "maybe"
    data_path = tmp_path / "report.json"
    data_path.write_text(json.dumps(data))
    with pytest.raises(ReportFileError, match=r"report.json: slos\[1\]\.verdict: 'maybe'"):
        load_report(data_path)
    data = json.loads(example_report("passed").to_json())
    data["startedAt"] = "2026-11-26T10:00:00"  # no zone
    with pytest.raises(ReportFileError, match=r"startedAt: .* has no time zone"):
        RunReport.from_dict(data, source="x.json")


def test_missing_file_and_directory_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ReportFileError, match="no such file"):
        load_report(tmp_path / "nope.json")
    with pytest.raises(ReportFileError, match="is a directory"):
        load_report(tmp_path)


# --------------------------------------------------------------------------- builders


def test_new_report_lists_every_fault_and_slo_before_anything_happened() -> None:
    report = new_report(example_gameday(), started_at=START)
    assert report.verdict == "error" and report.exit_code == 4
    assert [(f.name, f.effective_at, f.scope) for f in report.faults] == [
        ("eu-dark", None, "regions eu")
    ]
    assert [s.name for s in report.slos] == ["failover", "lag", "no-lost-writes", "p99-latency"]
    assert all(not s.evaluated and s.verdict == "unknown" for s in report.slos)
    assert report.target.regions == ["us", "eu", "ap"]
    assert set(report.traffic.by_region) == {"us", "eu", "ap"}


def test_finishing_a_run_that_never_evaluated_an_slo_fails_it() -> None:
    report = new_report(example_gameday(), started_at=START)
    finish(report, finished_at=START + 1)
    assert report.verdict == "failed"  # a forgotten measurement is not a pass


def test_unknown_fails_the_run_unless_on_no_data_is_ignore() -> None:
    gameday = example_gameday()
    failover, lag, lost, p99 = gameday.spec.slos
    report = new_report(gameday, started_at=START)
    report.record_slo(slo_result(failover, 1.0))
    report.record_slo(slo_result(lag, 2.0))
    report.record_slo(slo_result(lost, 0))
    report.record_slo(slo_result(p99, None))  # onNoData: ignore
    finish(report, finished_at=START + 1)
    assert report.verdict == "passed" and report.exit_code == 0
    report.record_slo(slo_result(lag, math.nan))
    finish(report, finished_at=START + 1)
    assert report.slos[1].verdict == "unknown"
    assert (report.verdict, report.exit_code) == ("failed", 1)


def test_slo_result_compares_with_the_objective_and_states_units() -> None:
    failover, lag, lost, p99 = example_gameday().spec.slos
    result = slo_result(failover, 31.0, source="probe", error_bound_seconds=0.02)
    assert (result.verdict, result.objective, result.unit) == ("failed", "<= 30s", "s")
    assert slo_result(failover, 30.0).verdict == "passed"
    assert slo_result(lag, 10.0).objective == "<= 1m, back under it within 30s"
    assert slo_result(lag, 10.0, passed=False).verdict == "failed"  # recoverWithin breached
    assert (slo_result(lost, 1).verdict, slo_result(lost, 1).unit) == ("failed", "writes")
    assert slo_result(p99, 0.2).verdict == "passed"
    assert slo_result(p99, 0.7).verdict == "failed"
    assert slo_result(failover, None, passed=True).verdict == "unknown"  # never a pass


def test_steady_state_without_a_value_fails() -> None:
    check = example_gameday().spec.steady_state[0]
    assert steady_state_result(check, 0.995).passed
    assert not steady_state_result(check, 0.95).passed
    empty = steady_state_result(check, math.nan)
    assert (empty.passed, empty.value, empty.error) == (False, None, "no data")


def test_fault_result_computes_time_to_effect_and_revert() -> None:
    fault = example_gameday().spec.faults[0]
    result = fault_result(FaultRecord(fault, 10.0, 10.25, 20.0, 20.5))
    assert result.time_to_effect_seconds == pytest.approx(0.25)
    assert result.time_to_revert_seconds == pytest.approx(0.5)
    assert result.scope == "regions eu"
    never = fault_result(FaultRecord(fault, requested_at=10.0))
    assert never.effective_at is None and never.time_to_effect_seconds is None


def test_fails_run_matches_the_junit_and_verdict_rules() -> None:
    def make(verdict: str, on_no_data: str = "fail") -> SLOResult:
        return SLOResult(
            name="x",
            type="promql",
            objective="< 1",
            measured=None,
            unit="",
            verdict=verdict,  # type: ignore[arg-type]
            on_no_data=on_no_data,  # type: ignore[arg-type]
        )

    assert not make("passed").fails_run
    assert make("failed").fails_run
    assert make("unknown").fails_run
    assert not make("unknown", "ignore").fails_run
