"""Rendering of CLI output that is not a report: plans and progress."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from chaosaa.durations import format_duration
from chaosaa.engine.plan import Plan


def render_plan(plan: Plan, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(dataclasses.asdict(plan), indent=2, default=str))
        return
    say = click.echo
    say(f"GameDay {plan.gameday}: target {plan.target_kind} ({', '.join(plan.regions)})")
    say(f"  Prometheus: {plan.prometheus}")
    say(f"  Estimated run time: ~{format_duration(round(plan.estimated_seconds))}")
    say("")
    say(
        "1. preflight: reach the target and Prometheus, check every PromQL expression, "
        "take the lease" + (", then set up the target for the run:" if plan.settings else "")
    )
    for setting in plan.settings:
        say(f"     {setting}")
    say(f"2. traffic: {plan.traffic}")
    say(f"3. steady state after {format_duration(plan.warmup)} warm-up:")
    for name, promql, expect in plan.steady_state:
        say(f"     {name}: {promql} {expect}")
    if not plan.steady_state:
        say("     (none)")
    say("4. inject (offsets from the start of injection; every fault renews its TTL):")
    for f in plan.faults:
        say(
            f"     +{format_duration(f.at)} .. +{format_duration(f.until)}  {f.name} ({f.type}), "
            f"ttl {format_duration(f.ttl)}"
        )
        for a in f.actions:
            say(f"         {a.scope}: {a.action}")
    if plan.abort:
        say("   abort when any of these stops holding:")
        for name, promql, expect, for_ in plan.abort:
            say(f"     {name}: {promql} {expect} (for {format_duration(for_)})")
    say("5. revert every fault (always), then recover: " + plan.recovery)
    say("6. verify SLOs:")
    for name, objective, how in plan.slos:
        say(f"     {name} {objective}: {how}")
    if not plan.slos:
        say("     (none)")
    say("7. report: report.json, junit.xml, report.html")
    for note in plan.notes:
        say(f"note: {note}")


def _ts(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S.%f")[:-3]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _steady(kind: str, d: dict[str, Any]) -> str:
    value = "no data" if d["value"] is None else f"{d['value']:g}"
    return f"steady state {kind}: {d['check']} = {value} [{'ok' if d['passed'] else 'FAILED'}]"


#: one line per event kind; events not listed print as "event: key=value, ..."
_LINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "fault.requested": lambda d: f"injecting {d['fault']} ({d['type']})",
    "fault.effective": lambda d: (
        f"fault {d['fault']} in place after {_ms(d['timeToEffectSeconds'])}"
    ),
    "fault.revert": lambda d: f"reverting {d['fault']}",
    "fault.reverted": lambda d: f"fault {d['fault']} reverted in {_ms(d['timeToRevertSeconds'])}",
    "target.open": lambda d: f"target reached: entry {d['entry']}",
    "steady.before": lambda d: _steady("before", d),
    "steady.after": lambda d: _steady("after", d),
    "slo": lambda d: (
        f"SLO {d['slo']}: {'-' if d['measured'] is None else format(d['measured'], 'g')}"
        f" -> {d['verdict']}"
    ),
}


def _describe(event: str, detail: dict[str, Any]) -> str | None:
    if event.startswith("phase.") or event == "run.finished":
        return None
    line = _LINES.get(event)
    if line is not None:
        return line(detail)
    return f"{event}: " + ", ".join(f"{k}={v}" for k, v in detail.items())


def _say(line: str) -> None:
    """Progress must never break a run: a closed pipe (``| head``) only stops the output."""
    with contextlib.suppress(OSError):
        click.echo(line, err=True)


class PlainProgress:
    """One line per event, timestamped; for logs and CI."""

    def __init__(self) -> None:
        self._last_traffic = 0.0

    def phase(self, name: str, detail: str = "") -> None:
        _say(f"{_ts(time.time())} == {name}" + (f": {detail}" if detail else ""))

    def event(self, at: float, event: str, detail: dict[str, Any]) -> None:
        text = _describe(event, detail)
        if text:
            _say(f"{_ts(at)}    {text}")

    def traffic(self, sent: int, ok: int, errors: int, by_region: dict[str, int]) -> None:
        now = time.monotonic()
        if now - self._last_traffic < 5:
            return
        self._last_traffic = now
        regions = " ".join(f"{r}={n}" for r, n in sorted(by_region.items()))
        _say(f"{_ts(time.time())}    traffic: {sent} sent, {errors} errors; served by {regions}")


class RichProgress:
    """Live status line on a TTY, events scrolling above it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        self._Text = Text
        self.console = Console(stderr=True)
        self._phase = "starting"
        self._traffic = ""
        self._start = time.monotonic()
        self._live = Live(
            self._status(), console=self.console, transient=True, refresh_per_second=4
        )
        self._live.start()

    def _status(self) -> Any:
        elapsed = format_duration(round(time.monotonic() - self._start))
        return self._Text.assemble(
            ("● ", "bold cyan"), (self._phase, "bold"), f"  {elapsed}  ", (self._traffic, "dim")
        )

    def phase(self, name: str, detail: str = "") -> None:
        self._phase = name + (f": {detail}" if detail else "")
        self.console.print(f"[bold cyan]==[/] [bold]{name}[/] {detail}")
        self._live.update(self._status())

    def event(self, at: float, event: str, detail: dict[str, Any]) -> None:
        text = _describe(event, detail)
        if text:
            style = "red" if "FAILED" in text or "failed" in event or "abort" in event else ""
            self.console.print(f"[dim]{_ts(at)}[/]   {text}", style=style, highlight=False)

    def traffic(self, sent: int, ok: int, errors: int, by_region: dict[str, int]) -> None:
        regions = " ".join(f"{r}:{n}" for r, n in sorted(by_region.items()))
        self._traffic = f"traffic {sent} sent, {errors} err  [{regions}]"
        self._live.update(self._status())

    def close(self) -> None:
        self._live.stop()


def make_progress(plain: bool) -> PlainProgress | RichProgress:
    if plain or not sys.stderr.isatty():
        return PlainProgress()
    return RichProgress()
