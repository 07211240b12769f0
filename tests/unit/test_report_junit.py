"""junit.xml: one testcase per SLO and steady-state check, in the shape CI systems read."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from chaosaa.engine.verdict import finish
from chaosaa.errors import ExitCode
from chaosaa.report.junit import render_junit
from chaosaa.report.model import RunReport
from tests.unit.report_examples import START, example_report

# The common JUnit schema (Ant's JUnit.xsd as extended by Jenkins' junit-10.xsd), which
# GitHub test reporters, GitLab and Jenkins all read. No XSD validator is installed here,
# so its rules are spelled out and checked by hand.
SUITES_ATTRS = {"name", "time", "tests", "failures", "errors", "skipped", "disabled"}
SUITE_ATTRS = {
    "name", "tests", "failures", "errors", "skipped", "disabled", "time", "timestamp",
    "hostname", "id", "package", "file", "log", "url", "version", "group",
}  # fmt: skip
SUITE_REQUIRED = {"name", "tests", "failures", "errors", "skipped", "time", "timestamp"}
SUITE_CHILD_ORDER = ["properties", "testcase", "system-out", "system-err"]
CASE_ATTRS = {"name", "assertions", "time", "classname", "status", "class", "file", "line"}
CASE_REQUIRED = {"classname", "name", "time"}
OUTCOMES = {"failure", "error", "skipped"}
DECIMAL = re.compile(r"^\d+(\.\d+)?$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")  # Ant: no zone, no fraction


def check_junit_shape(xml: str) -> ET.Element:
    """Parse and check the document against the JUnit schema's rules; return the suite."""
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    assert set(root.attrib) <= SUITES_ATTRS
    suites = list(root)
    assert [s.tag for s in suites] == ["testsuite"]
    suite = suites[0]
    assert SUITE_REQUIRED <= set(suite.attrib) <= SUITE_ATTRS
    assert TIMESTAMP.match(suite.attrib["timestamp"]), suite.attrib["timestamp"]
    for counter in ("tests", "failures", "errors", "skipped"):
        assert suite.attrib[counter].isdigit()
        assert root.attrib[counter] == suite.attrib[counter]
    assert DECIMAL.match(suite.attrib["time"])
    order = [SUITE_CHILD_ORDER.index(child.tag) for child in suite]
    assert order == sorted(order), [child.tag for child in suite]
    for prop in suite.iter("property"):
        assert set(prop.attrib) == {"name", "value"}
    cases = suite.findall("testcase")
    for case in cases:
        assert CASE_REQUIRED <= set(case.attrib) <= CASE_ATTRS
        assert DECIMAL.match(case.attrib["time"])
        outcomes = [child for child in case if child.tag in OUTCOMES]
        assert len(outcomes) <= 1
        for outcome in outcomes:
            assert set(outcome.attrib) <= {"message", "type"}
            assert outcome.attrib.get("message")
    count = {tag: sum(1 for c in cases if c.find(tag) is not None) for tag in OUTCOMES}
    assert int(suite.attrib["tests"]) == len(cases)
    assert int(suite.attrib["failures"]) == count["failure"]
    assert int(suite.attrib["errors"]) == count["error"]
    assert int(suite.attrib["skipped"]) == count["skipped"]
    return suite


def _cases(suite: ET.Element) -> dict[str, ET.Element]:
    return {case.attrib["name"]: case for case in suite.findall("testcase")}


def _outcome(case: ET.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


def test_passed_run_has_one_testcase_per_slo_and_steady_state_check() -> None:
    report = example_report("passed")
    suite = check_junit_shape(render_junit(report))
    cases = _cases(suite)
    expected = len(report.slos) + len(report.steady_state.before) + len(report.steady_state.after)
    assert len(cases) == expected == 6
    assert set(cases) == {
        "steady state before: success-rate",
        "slo failover (failoverTime)",
        "slo lag (replicationLag)",
        "slo no-lost-writes (lostWrites)",
        "slo p99-latency (promql)",
        "steady state after: success-rate",
    }
    assert suite.attrib["name"] == "gameday region-down"
    assert suite.attrib["timestamp"] == "2026-11-26T10:00:00"
    assert suite.attrib["time"] == "112.500"
    assert (suite.attrib["failures"], suite.attrib["errors"], suite.attrib["skipped"]) == (
        "0",
        "0",
        "1",
    )
    # unknown with onNoData: ignore is skipped, not failed
    assert _outcome(cases["slo p99-latency (promql)"]) == "skipped"


def test_failed_slo_states_measured_objective_source_and_error_bound() -> None:
    suite = check_junit_shape(render_junit(example_report("failed")))
    cases = _cases(suite)
    failure = cases["slo failover (failoverTime)"].find("failure")
    assert failure is not None
    assert failure.attrib["type"] == "failed"
    assert failure.attrib["message"] == (
        "failover: measured 42s, objective <= 30s (source probe, error bound ±20ms)"
    )
    lost = cases["slo no-lost-writes (lostWrites)"].find("failure")
    assert lost is not None and "measured 3 writes, objective <= 0" in lost.attrib["message"]
    after = cases["steady state after: success-rate"].find("failure")
    assert after is not None and "value 0.97, expected >= 0.99" in after.attrib["message"]
    assert suite.attrib["failures"] == "4"  # failover, lag, lost writes, steady state after


def test_unknown_verdict_is_a_failure_of_type_unknown() -> None:
    report = example_report("passed")
    report.slos[1].verdict = "unknown"
    report.slos[1].measured = None
    report.slos[1].details = {"reason": "query failed: timeout"}
    suite = check_junit_shape(render_junit(report))
    failure = _cases(suite)["slo lag (replicationLag)"].find("failure")
    assert failure is not None
    assert failure.attrib["type"] == "unknown"
    assert "query failed: timeout" in failure.attrib["message"]
    assert "never a pass" in failure.attrib["message"]
    assert suite.attrib["failures"] == "1"


def test_aborted_run_fails_the_abort_case_with_the_reason_and_skips_slos() -> None:
    report = example_report("aborted")
    suite = check_junit_shape(render_junit(report))
    cases = _cases(suite)
    aborted = cases["run aborted"].find("failure")
    assert aborted is not None and aborted.attrib["type"] == "aborted"
    assert report.reason and report.reason in aborted.attrib["message"]
    before = cases["steady state before: success-rate"].find("failure")
    assert before is not None and "value 0.91" in before.attrib["message"]
    for slo in report.slos:
        case = cases[f"slo {slo.name} ({slo.type})"]
        assert _outcome(case) == "skipped"
        skipped = case.find("skipped")
        assert skipped is not None and "not evaluated" in skipped.attrib["message"]
    assert _outcome(cases["steady state after: success-rate"]) == "skipped"
    assert (suite.attrib["failures"], suite.attrib["skipped"]) == ("2", "5")


def test_error_run_reports_an_error_case() -> None:
    report = example_report("aborted")
    finish(
        report,
        finished_at=START + 3,
        stopped=ExitCode.ENVIRONMENT,
        reason="target unreachable: lab router did not answer",
    )
    suite = check_junit_shape(render_junit(report))
    error = _cases(suite)["run"].find("error")
    assert error is not None and "lab router did not answer" in error.attrib["message"]
    assert suite.attrib["errors"] == "1"


def test_system_out_carries_the_run_summary() -> None:
    suite = check_junit_shape(render_junit(example_report("failed")))
    out = suite.findtext("system-out") or ""
    assert "GameDay region-down: FAILED (exit code 1)" in out
    assert "fault eu-dark (blackhole): time to effect 12ms" in out
    assert "3 lost" in out


def test_characters_xml_cannot_carry_do_not_break_the_document() -> None:
    report = example_report("aborted")
    report.reason = "router said \x00\x1b[31mno\x07 <&>"
    suite = check_junit_shape(render_junit(report))
    message = _cases(suite)["run aborted"].find("failure")
    assert message is not None and "<&>" in message.attrib["message"]


def test_report_without_checks_or_slos_is_still_valid() -> None:
    report = RunReport.from_json(example_report("passed").to_json())
    report.slos, report.steady_state.before, report.steady_state.after = [], [], []
    suite = check_junit_shape(render_junit(report))
    assert suite.attrib["tests"] == "0"


@pytest.mark.parametrize("outcome", ["passed", "failed", "aborted"])
def test_junit_renders_the_same_from_the_stored_json(outcome: str) -> None:
    report = example_report(outcome)  # type: ignore[arg-type]
    assert render_junit(RunReport.from_json(report.to_json())) == render_junit(report)


def test_a_failed_latency_slo_names_each_regions_percentile_and_sample_count() -> None:
    report = example_report("failed", with_latency=True)
    again = RunReport.from_json(report.to_json())
    for r in (report, again):
        case = _cases(check_junit_shape(render_junit(r)))["slo survivors-p99 (latency)"]
        failure = case.find("failure")
        assert failure is not None
        message = failure.attrib["message"]
        assert "measured 323ms, objective p99 <= 250ms in every region" in message
        assert "by serving region: ap 23.8ms (n=914, before 23.6ms) · us 323ms" in message
        assert '"samples": 1215' in (failure.text or "")
