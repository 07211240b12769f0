"""The ``chaosaa`` command: thin click commands over the engine.

Commands parse arguments, build objects, call the core and map ``ChaosaaError`` to the exit
codes of DESIGN.md section 3. Heavy modules are imported inside commands so that
``chaosaa validate`` and ``--help`` start fast.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from chaosaa import __version__
from chaosaa.cli.options import target_options
from chaosaa.errors import ChaosaaError, ExitCode

if TYPE_CHECKING:
    from chaosaa.targets.base import TargetOptions

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(exc: ChaosaaError) -> NoReturn:
    """Print an error the way every command does and exit with its code."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    for line in lines:
        click.echo(f"chaosaa: error: {line}" if len(lines) == 1 else line, err=True)
    sys.exit(int(exc.exit_code))


#: commands that live in their own modules, imported only when used (fast cold start)
LAZY_COMMANDS = {
    "lab": "chaosaa.cli.lab:lab",
    "report": "chaosaa.cli.report:report",
    "kind": "chaosaa.cli.kind:kind",
    "agent": "chaosaa.cli.agent:agent",
    "operator": "chaosaa.cli.operator:operator",
    "crd": "chaosaa.cli.crd:crd",
    "gameday": "chaosaa.cli.gameday:gameday",
}


class LazyGroup(click.Group):
    """A group whose heavier commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names |= {n for n in LAZY_COMMANDS if self.get_command(ctx, n) is not None}
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        import importlib

        module, attr = LAZY_COMMANDS[cmd_name].split(":")
        try:
            command: click.Command = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            return None  # not part of this build
        self.add_command(command, cmd_name)
        return command


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="chaosaa")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Chaos GameDays for multi-region, active-active systems.

    chaosaa injects region-scale faults (region blackhole, cross-region latency,
    replication-lag spikes, region down), drives traffic, and verifies failover time,
    replication lag and lost writes as SLOs, each number with its source and error bound.

    \b
    Quick start (no cluster, no Docker):
      chaosaa lab up                                  # a local 3-region system
      chaosaa run experiments/region-down.yaml        # exit 0 = every SLO passed
      chaosaa lab down

    \b
    Exit codes of run: 0 passed, 1 an SLO failed, 2 invalid input,
    3 aborted (steady state or abort rule), 4 environment error.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
@click.option(
    "--target",
    "target_kind",
    type=click.Choice(["lab", "kind", "kubernetes"]),
    help="Also check that every fault can run on this target kind (default: the file's own).",
)
def validate(files: tuple[Path, ...], quiet: bool, target_kind: str | None) -> None:
    """Check GameDay files without touching anything.

    Every problem is reported as FILE:LINE: FIELD: REASON. Exit 0 when all files are
    valid, 2 when any is not. Every fault must be one the target can do (its own
    target.kind, or --target).

    \b
    Examples:
      $ chaosaa validate experiments/*.yaml
      experiments/region-down.yaml: valid (region-down: 1 fault, 3 SLOs)
      $ chaosaa validate --target kind experiments/region-down.yaml
    """
    from chaosaa.errors import SpecError
    from chaosaa.spec.loader import load_gameday
    from chaosaa.targets.base import target_class

    bad = 0
    for path in files:
        try:
            gd = load_gameday(path)
            target = target_class(target_kind or gd.spec.target.kind)
            refused = [
                f"{path}: spec.faults[{i}].type: {reason}"
                for i, fault in enumerate(gd.spec.faults)
                if (reason := target.unsupported(fault)) is not None
            ]
            if refused:
                raise SpecError(refused)
        except SpecError as exc:
            bad += 1
            for problem in exc.problems:
                click.echo(problem, err=True)
            continue
        if not quiet:
            s = gd.spec
            click.echo(
                f"{path}: valid ({gd.name}: {len(s.faults)} fault{'s' * (len(s.faults) != 1)}, "
                f"{len(s.slos)} SLO{'s' * (len(s.slos) != 1)})"
            )
    sys.exit(int(ExitCode.INVALID) if bad else 0)


def _load(path: Path, overrides: tuple[str, ...]) -> Any:
    from chaosaa.errors import SpecError
    from chaosaa.spec.loader import load_gameday

    try:
        return load_gameday(path, overrides)
    except SpecError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(int(ExitCode.INVALID))


SET_HELP = "Override a field before validation, e.g. --set spec.traffic.rate=100 (repeatable)."


@cli.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def plan(file: Path, overrides: tuple[str, ...], output: str) -> None:
    """Show exactly what a run would do, per region, link and node. Touches nothing.

    Lists the traffic, the steady-state queries, each fault with its offset, duration,
    TTL and the concrete actions the target will take, the abort rules, how each SLO is
    measured, and an estimate of the run's length.

    \b
    Example:
      $ chaosaa plan experiments/region-down.yaml
      $ chaosaa plan experiments/latency.yaml --set spec.faults.0.delay=500ms -o json
    """
    from chaosaa.cli.render import render_plan

    gameday = _load(file, overrides)
    from chaosaa.engine.plan import build_plan

    try:
        the_plan = build_plan(gameday)
    except ChaosaaError as exc:
        fail(exc)
    render_plan(the_plan, output)


@cli.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where report.json, junit.xml and report.html go "
    "[default: chaosaa-reports/<gameday>-<time>].",
)
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("--dry-run", is_flag=True, help="Validate and plan only; inject nothing.")
@target_options(ephemeral_lab=True)
@click.option("--plain", is_flag=True, help="Plain progress lines even on a terminal.")
def run(
    file: Path,
    report_dir: Path | None,
    overrides: tuple[str, ...],
    dry_run: bool,
    target: TargetOptions,
    plain: bool,
) -> None:
    """Run a GameDay: inject its faults, drive traffic, verify its SLOs.

    Faults are always reverted: on success, SLO failure, abort, error, Ctrl-C and
    SIGTERM. If chaosaa itself is killed, every fault reverts by itself when its TTL
    expires (default 10s). Writes report.json, junit.xml and report.html.

    \b
    Exit codes: 0 every SLO passed, 1 an SLO failed (or was unknown), 2 invalid
    input, 3 aborted (steady state not met or an abort rule fired), 4 environment
    error (target or Prometheus unreachable, a fault could not be applied/reverted).

    \b
    Examples:
      $ chaosaa run experiments/region-down.yaml
      $ chaosaa run experiments/latency.yaml --set spec.faults.0.delay=300ms \\
          --report-dir out/latency
      $ chaosaa run prod-eu-down.yaml --allow-context prod-eu --dry-run
    """
    from chaosaa.cli.runner import run_command

    gameday = _load(file, overrides)
    code = run_command(
        gameday,
        source=file,
        report_dir=report_dir,
        dry_run=dry_run,
        target=target,
        plain=plain,
    )
    sys.exit(code)


@cli.command(context_settings=CONTEXT)
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--target",
    "target_kind",
    type=click.Choice(["lab", "kind", "kubernetes"]),
    default=None,
    help="Without FILE: which kind of target to clean.",
)
@target_options()
def rollback(file: Path | None, target_kind: str | None, target: TargetOptions) -> None:
    """Revert every chaosaa fault found on a target (the big red button).

    With a GameDay FILE, cleans that GameDay's target; otherwise give --target.

    \b
    Examples:
      $ chaosaa rollback experiments/region-down.yaml
      $ chaosaa rollback --target lab
    """
    from chaosaa.cli.runner import rollback_command

    if file is None and target_kind is None:
        raise click.UsageError("give a GameDay FILE or --target")
    gameday = _load(file, ()) if file is not None else None
    code = rollback_command(gameday, target_kind, target)
    sys.exit(code)


def main() -> None:
    try:
        cli.main(prog_name="chaosaa")
    except ChaosaaError as exc:
        fail(exc)


if __name__ == "__main__":
    main()
