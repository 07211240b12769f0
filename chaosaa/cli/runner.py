"""``chaosaa run`` and ``chaosaa rollback``: signals, progress, reports, exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from chaosaa.engine.progress import Progress
from chaosaa.errors import ChaosaaError, ExitCode
from chaosaa.spec.model import GameDay
from chaosaa.targets.base import TargetOptions

if TYPE_CHECKING:
    from chaosaa.engine.outcome import RunOutcome
    from chaosaa.engine.run import Run


class _PrewarmChart:
    """The CLI's progress, which also starts importing the chart's plotting library in a
    thread once every fault is reverted (phase ``recover``): the GameDay's own recovery
    time hides the import, and report.html is written without waiting for it."""

    def __init__(self, inner: Progress) -> None:
        self.inner = inner
        self._thread: threading.Thread | None = None

    def phase(self, name: str, detail: str = "") -> None:
        if name == "recover" and self._thread is None:
            from chaosaa.report.chart import prewarm

            self._thread = threading.Thread(target=prewarm, name="prewarm-chart", daemon=True)
            self._thread.start()
        self.inner.phase(name, detail)

    def event(self, at: float, event: str, detail: dict[str, Any]) -> None:
        self.inner.event(at, event, detail)

    def traffic(self, sent: int, ok: int, errors: int, by_region: dict[str, int]) -> None:
        self.inner.traffic(sent, ok, errors, by_region)


async def _execute_with_signals(run: Run) -> RunOutcome:
    """Run to completion; SIGINT/SIGTERM stop it once so that every fault reverts."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not run.stop(f"interrupted by {sig.name}", signal=sig.name):
            run.emit(
                "run.signal",
                {"signal": sig.name, "action": "still reverting; SIGKILL leaves it to the TTLs"},
            )

    inner = run.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await asyncio.shield(inner)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if not inner.done():
            await inner


def run_command(
    gameday: GameDay,
    *,
    source: Path,
    report_dir: Path | None,
    dry_run: bool,
    target: TargetOptions,
    plain: bool,
) -> int:
    from chaosaa.cli.render import make_progress, render_plan
    from chaosaa.engine.plan import build_plan

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    options = replace(target, run_id=f"{gameday.name}-{stamp}")
    try:
        plan = build_plan(gameday, options)
    except ChaosaaError as exc:
        click.echo(f"chaosaa: error: {source}: {exc}", err=True)
        return int(exc.exit_code)
    if dry_run:
        render_plan(plan, "text")
        click.echo("\ndry run: nothing was injected.")
        return 0

    from chaosaa.engine.reporting import build_report
    from chaosaa.engine.run import Run
    from chaosaa.report.console import render_summary
    from chaosaa.report.write import write_reports

    progress = _PrewarmChart(make_progress(plain))
    try:
        run = Run(gameday, options, progress)
        outcome = asyncio.run(_execute_with_signals(run))
    finally:
        close = getattr(progress.inner, "close", None)
        if close is not None:
            close()
    report = build_report(outcome)
    directory = report_dir or Path("chaosaa-reports") / f"{gameday.name}-{stamp}"
    paths = write_reports(report, directory)
    from rich.console import Console

    with contextlib.suppress(OSError):  # a closed stdout must not change the exit code
        render_summary(report, Console(), paths)
    return int(report.exit_code)


def rollback_command(
    gameday: GameDay | None, target_kind: str | None, target: TargetOptions
) -> int:
    from chaosaa.spec.model import Target as TargetSpec
    from chaosaa.targets.base import target_for

    if gameday is not None:
        spec = gameday.spec.target
    elif target_kind == "kubernetes":
        # Without a GameDay the allow-listed contexts are the target: every chaosaa
        # artefact in them (all namespaces) is removed.
        if not target.allowed_contexts:
            click.echo(
                "chaosaa: error: rollback --target kubernetes needs the contexts to clean: "
                "--allow-context CONTEXT (repeatable) or CHAOSAA_ALLOWED_CONTEXTS",
                err=True,
            )
            return int(ExitCode.INVALID)
        regions = {
            f"c{i}": {"context": c} for i, c in enumerate(dict.fromkeys(target.allowed_contexts))
        }
        spec = TargetSpec.model_validate({"kind": "kubernetes", "regions": regions})
    else:
        assert target_kind is not None
        spec = TargetSpec.model_validate({"kind": target_kind, "regions": {"all": {}}})
    options = replace(
        target,
        run_id="rollback",
        # without a GameDay, the kind target cleans every kind cluster it finds
        extra={"rollback": True, "all": gameday is None},
    )

    async def go() -> list[str]:
        target = target_for(spec, options)
        try:
            await target.open()
            return await target.rollback()
        finally:
            await target.close()

    try:
        removed = asyncio.run(go())
    except ChaosaaError as exc:
        click.echo(f"chaosaa: error: {exc}", err=True)
        return int(exc.exit_code)
    if not removed:
        click.echo("nothing to roll back: no chaosaa faults found")
    for line in removed:
        click.echo(f"removed: {line}")
    return int(ExitCode.PASSED)
