"""Write a run's three artefacts, each atomically (a reader never sees half a file)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from chaosaa.report.html import render_html
from chaosaa.report.junit import render_junit
from chaosaa.report.model import RunReport

REPORT_JSON = "report.json"
JUNIT_XML = "junit.xml"
REPORT_HTML = "report.html"


def write_reports(report: RunReport, directory: Path) -> dict[str, Path]:
    """Write ``report.json``, ``junit.xml`` and ``report.html`` into ``directory``.

    Returns ``{"json": ..., "junit": ..., "html": ...}``. The JSON goes first: it is the
    source of truth, and ``chaosaa report`` re-renders the others from it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / REPORT_JSON,
        "junit": directory / JUNIT_XML,
        "html": directory / REPORT_HTML,
    }
    write_atomic(paths["json"], report.to_json())
    write_atomic(paths["junit"], render_junit(report))
    write_atomic(paths["html"], render_html(report))
    return paths


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same directory, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
