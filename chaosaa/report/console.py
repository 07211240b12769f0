"""The end-of-run summary on the terminal: compact, coloured on a TTY, plain words without."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from chaosaa.report.fmt import by_region, format_figure, format_seconds
from chaosaa.report.model import RunReport, SLOResult

_STYLES = {
    "passed": "bold green",
    "failed": "bold red",
    "aborted": "bold yellow",
    "error": "bold magenta",
    "unknown": "bold yellow",
    "skipped": "dim",
}


def render_summary(
    report: RunReport, console: Console, paths: Mapping[str, Path] | None = None
) -> None:
    """Print verdict, SLOs, faults, data integrity and where the reports are."""
    headline = Text()
    headline.append(f"GameDay {report.gameday}: ")
    headline.append(report.verdict.upper(), style=_STYLES.get(report.verdict, "bold"))
    headline.append(
        f"  exit {report.exit_code} · {format_seconds(report.duration_seconds)} · "
        f"{report.target.kind} [{', '.join(report.target.regions)}]"
    )
    console.print(headline)
    if report.reason:
        console.print(Text(f"reason: {report.reason}", style="yellow"))
    for finding in report.findings:
        console.print(Text(finding, style="bold"), soft_wrap=True)

    if report.slos:
        console.print(_slo_table(report))
        for slo in report.slos:
            regions = by_region(slo.details) if slo.evaluated else ""
            if regions:
                console.print(Text(f"{slo.name} by serving region: {regions}", style="dim"))
    if report.faults:
        console.print(_fault_table(report))

    d = report.data_integrity
    integrity = Text("data integrity: ")
    if d.checked:
        integrity.append(f"{d.lost} lost", style="bold red" if d.lost else "green")
        integrity.append(f" of {d.acknowledged_writes} acknowledged writes, ")
        integrity.append(
            f"{d.divergent_keys} divergent keys", style="bold red" if d.divergent_keys else ""
        )
        integrity.append(f", {d.conflicts} conflicts")
    else:
        integrity.append("not read back", style="dim")
    console.print(integrity)
    for c in d.canaries:
        line = Text(f"canaries {c.datastore}: ")
        if c.checked:
            line.append(f"{c.lost} lost", style="bold red" if c.lost else "green")
            line.append(f" of {c.acknowledged} acknowledged, ")
            line.append(f"{c.divergent} divergent", style="bold red" if c.divergent else "")
            refused = ", ".join(f"{r} {n}" for r, n in c.write_errors.items() if n)
            if refused:
                line.append(f"; writes refused: {refused}")
        else:
            line.append(f"not read back ({c.error or 'the run stopped first'})", style="dim")
        console.print(line)
    t = report.traffic
    console.print(f"traffic: {t.requests} requests, {t.errors} errors")
    for kind, path in (paths or {}).items():
        console.print(Text(f"{kind:>5}: {path}", style="dim"))


def _table(title: str) -> Table:
    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False
    )


def _slo_table(report: RunReport) -> Table:
    table = _table("SLOs")
    # Names and verdicts never wrap; a long figure ("below resolution (< 2s)") may.
    table.add_column("SLO", no_wrap=True)
    table.add_column("objective", min_width=8)
    table.add_column("measured", justify="right", min_width=12)
    table.add_column("source", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for slo in report.slos:
        if len(slo.sources) > 1:
            # Several sources: the verdict needs each; every source on a line of its own.
            table.add_row(slo.name, slo.objective, "", "sources:", _slo_verdict(slo))
            for src in slo.sources:
                figure = format_figure(src.measured, slo.unit, src.error_bound_seconds)
                verdict = Text(src.verdict, style=_STYLES[src.verdict].replace("bold ", ""))
                table.add_row("", "", figure, src.source, verdict)
            continue
        measured = "-"
        if slo.evaluated:
            measured = format_figure(slo.measured, slo.unit, slo.error_bound_seconds)
        table.add_row(slo.name, slo.objective, measured, slo.source or "-", _slo_verdict(slo))
    return table


def _slo_verdict(slo: SLOResult) -> Text:
    if not slo.evaluated:
        return Text("not evaluated", style=_STYLES["skipped"])
    if slo.verdict == "unknown" and slo.on_no_data == "ignore":
        return Text("no data (ignored)", style=_STYLES["skipped"])
    return Text(slo.verdict.upper(), style=_STYLES[slo.verdict])


def _fault_table(report: RunReport) -> Table:
    table = _table("Faults")
    table.add_column("fault", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("scope")
    table.add_column("time to effect", justify="right", no_wrap=True)
    table.add_column("time to revert", justify="right", no_wrap=True)
    for fault in report.faults:
        if fault.effective_at is None:
            effect = Text("never in place", style="yellow")
        else:
            effect = Text(format_seconds(fault.time_to_effect_seconds))
        table.add_row(
            fault.name,
            fault.type,
            fault.scope or "-",
            effect,
            format_seconds(fault.time_to_revert_seconds),
        )
    return table
