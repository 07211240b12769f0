"""``chaosaa run`` and ``chaosaa rollback``: signals, progress, reports, exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from chaosaa.engine.progress import Progress
from chaosaa.errors import ChaosaaError, ExitCode
from chaosaa.failpoints import configure_from_env, failpoint_sync
from chaosaa.spec.model import GameDay
from chaosaa.targets.base import TargetOptions

if TYPE_CHECKING:
    from chaosaa.engine.outcome import RunOutcome
    from chaosaa.engine.run import Run
    from chaosaa.report.model import RunReport

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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


class _LateSignals:
    """SIGINT/SIGTERM once the run is over: every fault is reverted by then, so the
    report is written and the verdict printed first (it takes a moment), not lost."""

    def __init__(self) -> None:
        self.received: list[str] = []

    def install(self) -> None:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum).name)


async def _execute_with_signals(run: Run, late: _LateSignals) -> RunOutcome:
    """Run to completion; SIGINT/SIGTERM stop it once so that every fault reverts. From
    the moment the run is over, ``late`` takes the signals."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not run.stop(f"interrupted by {sig.name}", signal=sig.name):
            run.emit(
                "run.signal",
                {"signal": sig.name, "action": "still reverting; SIGKILL leaves it to the TTLs"},
            )

    inner = run.start()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await asyncio.shield(inner)
    finally:
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        late.install()
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
        configure_from_env()  # CHAOSAA_FAILPOINTS: read once, refused when malformed
    except ChaosaaError as exc:
        click.echo(f"chaosaa: error: {exc}", err=True)
        return int(exc.exit_code)
    try:
        plan = build_plan(gameday, options)
    except ChaosaaError as exc:
        click.echo(f"chaosaa: error: {source}: {exc}", err=True)
        return int(exc.exit_code)
    if dry_run:
        render_plan(plan, "text")
        click.echo("\ndry run: nothing was injected.")
        return 0

    from chaosaa.engine.preflight import check_report_dir
    from chaosaa.engine.reporting import build_report
    from chaosaa.engine.run import Run

    directory = report_dir or Path("chaosaa-reports") / f"{gameday.name}-{stamp}"
    try:
        check_report_dir(directory)
    except ChaosaaError as exc:
        click.echo(f"chaosaa: error: {exc}; nothing was run", err=True)
        return int(exc.exit_code)

    progress = _PrewarmChart(make_progress(plain))
    late = _LateSignals()
    try:
        try:
            run = Run(gameday, options, progress)
            outcome = asyncio.run(_execute_with_signals(run, late))
        finally:
            close = getattr(progress.inner, "close", None)
            if close is not None:
                close()
        try:
            report = build_report(outcome)
        except Exception as exc:  # a bug: the verdict is known all the same
            code = int(outcome.exit_code)
            click.echo(f"chaosaa: error: no report could be built ({exc}): exit {code}", err=True)
        else:
            code = _report(report, directory, rollback=_rollback_command(source, options))
    finally:
        late.restore()
    for name in late.received:
        click.echo(f"chaosaa: {name} after the run: the report was written first", err=True)
    return code


def _report(report: RunReport, directory: Path, *, rollback: str) -> int:
    """Write the reports and print the verdict; neither a full disk nor a failure while
    writing costs the verdict on the console or the exit code."""
    from rich.console import Console

    from chaosaa.report.console import render_summary
    from chaosaa.report.write import write_reports

    paths: dict[str, Path] = {}
    failed: Exception | None = None
    try:
        failpoint_sync("report.before")
        paths = write_reports(report, directory)
        failpoint_sync("report.after")
    except Exception as exc:
        failed = exc
    with contextlib.suppress(OSError):  # a closed stdout must not change the exit code
        render_summary(report, Console(), paths)
    if failed is not None:
        click.echo(
            f"chaosaa: error: the report could not be written to {directory} ({failed}); "
            f"the verdict above stands: exit {report.exit_code}",
            err=True,
        )
    left = [f.name for f in report.faults if f.requested_at is not None and f.reverted_at is None]
    if left:
        click.echo(
            f"chaosaa: not verified reverted: {', '.join(left)} (each reverts itself when its "
            f"TTL lapses, if the target is alive). Make sure with: {rollback}",
            err=True,
        )
    return int(report.exit_code)


def _rollback_command(source: Path, options: TargetOptions) -> str:
    """The ``chaosaa rollback`` command line that cleans this run's target."""
    argv = ["chaosaa", "rollback", str(source)]
    if options.state_dir:
        argv += ["--lab-state", options.state_dir]
    if options.kubeconfig:
        argv += ["--kubeconfig", options.kubeconfig]
    for context in options.allowed_contexts:
        argv += ["--allow-context", context]
    return shlex.join(argv)


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
