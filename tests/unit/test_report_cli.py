"""`chaosaa report RUN.json`: re-render a stored report; bad files exit 2 naming the file."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from chaosaa.cli.report import report as report_command
from chaosaa.report.write import write_reports
from tests.unit.report_examples import example_report


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    paths = write_reports(example_report("failed"), tmp_path / "run")
    paths["html"].unlink()
    return paths["json"]


def test_rerenders_html_next_to_the_json_and_prints_the_summary(stored: Path) -> None:
    result = CliRunner().invoke(report_command, [str(stored)])
    assert result.exit_code == 0, result.output
    html = stored.parent / "report.html"
    assert "<svg" in html.read_text()
    assert "GameDay region-down: FAILED" in result.output
    assert str(html) in result.output


def test_writes_html_and_junit_where_asked(stored: Path, tmp_path: Path) -> None:
    html, junit = tmp_path / "out" / "page.html", tmp_path / "junit.xml"
    html.parent.mkdir()
    result = CliRunner().invoke(
        report_command, [str(stored), "--html", str(html), "--junit", str(junit), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert html.read_text().startswith("<!DOCTYPE html>")
    assert ET.parse(junit).getroot().tag == "testsuites"
    assert not (stored.parent / "report.html").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("this is not json", "not JSON"),
        (json.dumps({"kind": "GameDay"}), "not a chaosaa run report"),
        (json.dumps({"schemaVersion": 99}), "schemaVersion 99 is not supported"),
    ],
)
def test_bad_files_exit_2_with_a_message_naming_the_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(report_command, [str(path)])
    assert result.exit_code == 2
    assert str(path) in result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_unwritable_output_exits_2_with_a_message(stored: Path, tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "sub" / "x.html"
    target.parent.parent.write_text("a file, not a directory")
    result = CliRunner().invoke(report_command, [str(stored), "--html", str(target)])
    assert result.exit_code == 2
    assert "cannot write" in result.output and str(target) in result.output


def test_help_teaches_with_an_example() -> None:
    result = CliRunner().invoke(report_command, ["--help"])
    assert result.exit_code == 0
    assert "chaosaa report reports/region-down/report.json" in result.output
    assert "--junit" in result.output and "--html" in result.output
    assert "schemaVersion" in result.output
