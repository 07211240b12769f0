"""write_reports: all three files, atomically, with the JSON as the source of truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaosaa.report.model import load_report
from chaosaa.report.write import write_reports
from tests.unit.report_examples import example_report


def test_writes_json_junit_and_html(tmp_path: Path) -> None:
    report = example_report("passed")
    paths = write_reports(report, tmp_path / "reports" / "run-1")
    assert {k: p.name for k, p in paths.items()} == {
        "json": "report.json",
        "junit": "junit.xml",
        "html": "report.html",
    }
    assert load_report(paths["json"]).to_json() == report.to_json()
    assert paths["junit"].read_text().startswith("<?xml")
    assert "<svg" in paths["html"].read_text()
    assert sorted(p.name for p in paths["json"].parent.iterdir()) == sorted(
        ["report.json", "junit.xml", "report.html"]
    )
    assert paths["html"].stat().st_mode & 0o777 == 0o644


def test_a_failed_render_leaves_no_half_file_and_keeps_the_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_reports(example_report("passed"), tmp_path)
    old_html = (tmp_path / "report.html").read_text()

    def broken(report: object) -> str:
        raise RuntimeError("template bug")

    monkeypatch.setattr("chaosaa.report.write.render_html", broken)
    with pytest.raises(RuntimeError):
        write_reports(example_report("failed"), tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["verdict"] == "failed"
    assert (tmp_path / "report.html").read_text() == old_html
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_write_atomic_removes_its_temporary_file_when_writing_fails(tmp_path: Path) -> None:
    from chaosaa.report.write import write_atomic

    target = tmp_path / "report.html"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "half \udc80 written")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
