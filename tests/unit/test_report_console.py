"""The end-of-run summary: readable without colour, coloured on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from chaosaa.report.console import render_summary
from tests.unit.report_examples import example_report


def _render(outcome: str, *, tty: bool) -> str:
    out = io.StringIO()
    console = Console(
        file=out, force_terminal=tty, width=120, color_system="standard" if tty else None
    )
    paths = {"json": Path("reports/report.json"), "html": Path("reports/report.html")}
    render_summary(example_report(outcome), console, paths)  # type: ignore[arg-type]
    return out.getvalue()


def test_summary_without_a_terminal_is_plain_words() -> None:
    text = _render("failed", tty=False)
    assert "\x1b[" not in text
    assert "GameDay region-down: FAILED" in text
    assert "exit 1" in text
    for line in ("failover", "42s ±20ms", "probe", "no data (ignored)", "eu-dark", "12ms"):
        assert line in text
    assert "3 lost of" in text
    assert "reports/report.html" in text


def test_summary_on_a_terminal_colours_verdicts() -> None:
    text = _render("passed", tty=True)
    assert "\x1b[" in text
    assert "PASSED" in text


def test_aborted_summary_says_why_and_what_was_not_done() -> None:
    text = _render("aborted", tty=False)
    assert "ABORTED" in text
    assert "reason: steady state not met before injection" in text
    assert "not evaluated" in text
    assert "never in place" in text
    assert "not read back" in text


def test_a_latency_slo_shows_each_serving_regions_percentile_and_sample_count() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    render_summary(example_report("failed", with_latency=True), console)
    text = out.getvalue()
    assert "p99 <= 250ms in every region during eu-dark from 5s in" in text
    assert "survivors-p99 by serving region: ap 23.8ms (n=914, before 23.6ms)" in text
    assert "us 323ms (n=1215, before 23.8ms)" in text
