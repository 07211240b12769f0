"""``chaosaa report RUN.json``: re-render a stored run report."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from chaosaa.errors import ExitCode
from chaosaa.report.console import render_summary
from chaosaa.report.html import render_html
from chaosaa.report.junit import render_junit
from chaosaa.report.model import ReportFileError, load_report
from chaosaa.report.write import REPORT_HTML, write_atomic

_EPILOG = """\b
Examples:
  chaosaa report reports/region-down/report.json
      re-render reports/region-down/report.html and print the summary
  chaosaa report report.json --html /tmp/gameday.html --junit /tmp/junit.xml
      write the page and the JUnit XML somewhere else

\b
Exit codes: 0 rendered, 2 the file is missing, not JSON, or not a chaosaa
report this version can read (schemaVersion 1).
"""


@click.command("report", epilog=_EPILOG)
@click.argument("run_json", metavar="RUN.json", type=click.Path(dir_okay=True, path_type=Path))
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help=f"Where to write the HTML page [default: {REPORT_HTML} next to RUN.json].",
)
@click.option(
    "--junit",
    "junit_out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the JUnit XML (one testcase per SLO and steady-state check) here.",
)
@click.option("--quiet", "-q", is_flag=True, help="Do not print the summary.")
def report(run_json: Path, html_out: Path | None, junit_out: Path | None, quiet: bool) -> None:
    """Re-render a stored run report (report.json) as HTML and, optionally, JUnit XML.

    The JSON that `chaosaa run` wrote is enough: the chart, tables and verdicts are all
    rebuilt from it, so a report can be re-rendered on another machine or by a newer
    chaosaa.
    """
    console = Console(stderr=False, highlight=False)
    ctx = click.get_current_context()
    try:
        run = load_report(run_json)
    except ReportFileError as e:
        click.echo(f"error: {e}", err=True)
        ctx.exit(int(ExitCode.INVALID))
    html_path = html_out if html_out is not None else run_json.parent / REPORT_HTML
    outputs = [("html", html_path, render_html)]
    if junit_out is not None:
        outputs.append(("junit", junit_out, render_junit))
    written: dict[str, Path] = {}
    for kind, path, render in outputs:
        try:
            write_atomic(path, render(run))
        except OSError as e:
            click.echo(f"error: cannot write {path}: {e.strerror or e}", err=True)
            ctx.exit(int(ExitCode.INVALID))
        written[kind] = path
    if not quiet:
        render_summary(run, console, {"json": run_json, **written})
