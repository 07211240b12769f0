"""report.html: self-contained, renders every kind of run, shows the chart and tables."""

from __future__ import annotations

import html
import math
import re
import sys
from html.parser import HTMLParser

import pytest

from chaosaa.report.chart import render_chart_svg
from chaosaa.report.html import render_html
from chaosaa.report.model import ChartMarker, ChartWindow, FaultResult, RunReport
from tests.unit.report_examples import START, example_report

EXTERNAL = re.compile(
    r"""(?:src|href|xlink:href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE
)


class _Collector(HTMLParser):
    """Every tag and the resources it would load, to prove the page loads nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.loads: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "data", "poster") and value:
                self.loads.append(value)


def _parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    return collector


def assert_self_contained(page: str) -> None:
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert "@import" not in page
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", page)
    collector = _parse(page)
    assert "script" not in collector.tags
    assert "link" not in collector.tags  # no external stylesheets or fonts
    # internal references only (#glyph ids of the chart)
    assert all(ref.startswith("#") for ref in collector.loads), collector.loads


@pytest.mark.parametrize("outcome", ["passed", "failed"])
def test_completed_run_page_is_self_contained_with_an_inline_svg_chart(outcome: str) -> None:
    page = render_html(example_report(outcome))  # type: ignore[arg-type]
    assert_self_contained(page)
    assert page.count("<svg") == 1
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert f"badge big v-{outcome}" in page
    assert "exit code <b>" in page


def _rows(page: str) -> list[list[str]]:
    """Table rows as lists of cell texts (tags dropped, entities decoded)."""
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, flags=re.DOTALL):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.DOTALL)
        rows.append([" ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split()) for c in cells])
    return rows


def test_page_shows_slo_fault_steady_state_integrity_and_traffic_tables() -> None:
    rows = _rows(render_html(example_report("failed")))
    expected = [
        # SLOs: name (+details), type, objective, measured, source, error bound, verdict
        ["failover", "failoverTime", "<= 30s", "42s", "probe", "±20ms", "failed"],
        ["no-lost-writes", "lostWrites", "<= 0", "3 writes", "readback", "-", "failed"],
        ["p99-latency", "promql", "< 0.5", "no data", "prometheus", "-", "no data (ignored)"],
        # faults: requested/effective/reverted relative to the start, then the times
        ["eu-dark", "blackhole", "regions eu", "+20.000s", "+20.012s", "+80.004s",
         "12ms", "60s", "4ms"],
        # steady state, data integrity, traffic, events
        ["success-rate", ">= 0.99", "0.97", "failed"],
        ["lost (acknowledged, then missing or superseded by older)", "3"],
        ["eu", "1800", "703", "39.06%"],
        ["+20.012s", "2026-11-26T10:00:20.012Z", "fault.effective",
         "fault=eu-dark, verifiedBy=link proxies"],
    ]  # fmt: skip
    for want in expected:
        assert any(
            len(row) == len(want) and all(w in cell for w, cell in zip(want, row, strict=True))
            for row in rows
        ), (want, [r for r in rows if r and r[0].startswith(want[0][:4])])


def test_aborted_run_without_chart_data_renders_a_note_instead_of_a_chart() -> None:
    report = example_report("aborted")
    assert report.chart.empty
    page = render_html(report)
    assert_self_contained(page)
    assert "<svg" not in page
    assert "the run was aborted before traffic or fault data were recorded" in page
    assert "steady state not met before injection" in page
    assert "never in place" in page
    assert "not evaluated" in page


def test_page_renders_from_the_stored_json_alone() -> None:
    report = example_report("failed")
    again = RunReport.from_json(report.to_json())
    page = render_html(again)
    assert page.count("<svg") == 1
    assert "failover: 42s" not in page  # labels are glyph paths, not text: still a chart
    assert render_chart_svg(again) == render_chart_svg(report)


def test_user_text_is_escaped() -> None:
    report = example_report("aborted")
    report.description = "<script>alert(1)</script>"
    report.reason = "<img src=x onerror=alert(1)>"
    page = render_html(report)
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;" in page


def test_empty_report_never_crashes() -> None:
    report = example_report("aborted")
    report.faults, report.slos, report.timeline = [], [], []
    report.steady_state.before, report.steady_state.after = [], []
    report.traffic.by_region = {}
    report.target.regions = []
    page = render_html(report)
    assert "This GameDay defines no SLOs." in page
    assert "No events were recorded." in page


def test_chart_copes_with_odd_data() -> None:
    """Overlapping faults, one never reverted, NaN and gaps, '$' in names, markers only."""
    report = example_report("passed")
    report.faults.append(
        FaultResult(name="ap-$lag", type="replicationLag", effective_at=START + 30)
    )
    report.chart.fault_windows.append(ChartWindow(name="ap-$lag", start=START + 30, end=None))
    report.chart.success_ratio["odd$"] = [(START + 1, math.nan), (START + 50, 0.5)]
    report.chart.replication_lag = {"flat": [(START + 1, 0.0), (START + 2, 0.0)]}
    page = render_html(report)
    assert page.count("<svg") == 1

    markers_only = example_report("aborted")
    markers_only.chart.failover_markers.append(ChartMarker(name="f", at=START + 1))
    svg = render_chart_svg(markers_only)
    assert svg is not None and svg.startswith("<svg")


def test_a_broken_chart_becomes_a_note_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(report: RunReport) -> str:
        raise RuntimeError("no backend")

    monkeypatch.setattr("chaosaa.report.html.render_chart_svg", broken)
    page = render_html(example_report("passed"))
    assert "could not be drawn (RuntimeError: no backend)" in page
    assert "failoverTime" in page


def test_chart_is_deterministic() -> None:
    report = example_report("passed")
    assert render_chart_svg(report) == render_chart_svg(report)


def test_importing_the_report_package_does_not_import_matplotlib() -> None:
    import subprocess
    import sys

    code = "import sys, chaosaa.report, chaosaa.cli.report; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_the_cli_imports_the_chart_library_while_the_run_recovers() -> None:
    from chaosaa.cli.runner import _PrewarmChart
    from chaosaa.engine.progress import Progress

    calls: list[tuple[str, ...]] = []

    class Recorder:
        def phase(self, name: str, detail: str = "") -> None:
            calls.append(("phase", name, detail))

        def event(self, at: float, event: str, detail: dict[str, object]) -> None:
            calls.append(("event", event))

        def traffic(self, sent: int, ok: int, errors: int, by_region: dict[str, int]) -> None:
            calls.append(("traffic", str(sent)))

    inner: Progress = Recorder()
    progress = _PrewarmChart(inner)
    progress.phase("inject", "1 fault(s)")
    progress.event(1.0, "fault.effective", {})
    progress.traffic(5, 5, 0, {"us": 5})
    assert progress._thread is None  # nothing while faults are in place
    progress.phase("recover", "traffic goes on for 1s")
    thread = progress._thread
    assert thread is not None and thread.daemon
    progress.phase("recover", "again")
    assert progress._thread is thread  # once per run
    thread.join(30)
    assert not thread.is_alive()
    assert "matplotlib.figure" in sys.modules
    assert calls == [
        ("phase", "inject", "1 fault(s)"),
        ("event", "fault.effective"),
        ("traffic", "5"),
        ("phase", "recover", "traffic goes on for 1s"),
        ("phase", "recover", "again"),
    ]


def test_a_latency_slo_row_shows_each_serving_regions_percentile() -> None:
    rows = _rows(render_html(example_report("failed", with_latency=True)))
    (row,) = [r for r in rows if r and r[0].startswith("survivors-p99")]
    assert row[0] == (
        "survivors-p99 by serving region: ap 23.8ms (n=914, before 23.6ms) · "
        "us 323ms (n=1215, before 23.8ms)"
    )
    assert row[1:] == [
        "latency",
        "p99 <= 250ms in every region during eu-dark from 5s in",
        "323ms",
        "probe",
        "±0.64ms",
        "failed",
    ]
