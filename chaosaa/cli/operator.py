"""``chaosaa operator``: the GameDay operator (kopf, embedded), DESIGN.md section 6."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click

from chaosaa.cli.main import CONTEXT, fail
from chaosaa.cli.options import target_options
from chaosaa.errors import ChaosaaError

if TYPE_CHECKING:
    from chaosaa.targets.base import TargetOptions


def _address(value: str) -> tuple[str | None, int]:
    if value.lower() in ("", "off", "none"):
        return None, 0
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{value!r}: expected HOST:PORT (e.g. 0.0.0.0:8080) or off")
    return host or "0.0.0.0", int(port)


@click.command(context_settings={**CONTEXT, "auto_envvar_prefix": "CHAOSAA_OPERATOR"})
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    envvar="CHAOSAA_OPERATOR_NAMESPACE",
    metavar="NS",
    help="Namespace to watch (repeatable).",
)
@click.option(
    "-A",
    "--all-namespaces",
    "clusterwide",
    is_flag=True,
    envvar="CHAOSAA_OPERATOR_ALL_NAMESPACES",
    help="Watch every namespace (needs a ClusterRole).",
)
@click.option(
    "--standalone",
    is_flag=True,
    help="kopf: no peering with other kopf operators (the chart's default).",
)
@click.option(
    "-L",
    "--liveness",
    metavar="URL",
    default=None,
    help="kopf's own liveness endpoint, e.g. http://0.0.0.0:8081/healthz.",
)
@click.option("-P", "--peering", metavar="NAME", default=None, help="kopf peering object.")
@click.option("-p", "--priority", type=int, default=None, help="kopf peering priority.")
@target_options(ephemeral_lab=False)
@click.option("--context", default=None, help="Context in --kubeconfig.")
@click.option(
    "--metrics-address",
    default="127.0.0.1:8080",
    show_default=True,
    envvar="CHAOSAA_METRICS_ADDRESS",
    help="HOST:PORT for /metrics and /healthz, or 'off'.",
)
@click.option(
    "--lease/--no-lease",
    default=True,
    show_default=True,
    help="Hold a Lease so that only one operator works at a time.",
)
@click.option("--lease-name", default="chaosaa-operator", show_default=True)
@click.option(
    "--lease-namespace",
    default=None,
    help="[default: $POD_NAMESPACE, or the one watched namespace]",
)
@click.option(
    "--lease-duration",
    type=float,
    default=15.0,
    show_default=True,
    help="Seconds before a silent holder's lease can be taken over.",
)
@click.option(
    "--max-concurrent-runs",
    type=int,
    default=20,
    show_default=True,
    envvar="CHAOSAA_MAX_CONCURRENT_RUNS",
    help="Runs executing at once; more wait as Pending.",
)
@click.option(
    "--clock",
    envvar="CHAOSAA_OPERATOR_CLOCK",
    default=None,
    hidden=True,
    help="Testing only: scale=N,anchor=UNIX makes schedules run N times faster.",
)
@click.option("-v", "--verbose", is_flag=True, help="kopf: more logging.")
@click.option("-d", "--debug", is_flag=True, help="kopf: debug logging.")
@click.option("-q", "--quiet", is_flag=True, help="kopf: less logging.")
@click.option(
    "--log-format", type=click.Choice(["plain", "full", "json"]), default="full", show_default=True
)
def operator(
    namespaces: tuple[str, ...],
    clusterwide: bool,
    standalone: bool,
    liveness: str | None,
    peering: str | None,
    priority: int | None,
    target: TargetOptions,
    context: str | None,
    metrics_address: str,
    lease: bool,
    lease_name: str,
    lease_namespace: str | None,
    lease_duration: float,
    max_concurrent_runs: int,
    clock: str | None,
    verbose: bool,
    debug: bool,
    quiet: bool,
    log_format: str,
) -> None:
    """Run the GameDay operator: schedules GameDays, executes GameDayRuns.

    GameDays run on their cron schedule (spec.schedule, spec.timeZone) as GameDayRuns
    named after the GameDay and the slot, executed by the same engine as `chaosaa run`.
    Deleting a running GameDayRun aborts it and reverts its faults. Metrics on
    /metrics, liveness on /healthz (--metrics-address).

    \b
    Examples:
      $ chaosaa operator -n chaos --standalone
      $ chaosaa operator -n chaos --standalone --lab-state ~/.chaosaa/lab
      $ kubectl -n chaos annotate gameday region-down chaosaa.io/trigger=$(date +%s)
    """
    import kopf

    from chaosaa.operator.clock import Clock
    from chaosaa.operator.config import OperatorConfig
    from chaosaa.operator.main import run

    # kopf's log handler replaces the plain one `chaosaa -v` installed
    logging.getLogger().handlers.clear()
    kopf.configure(
        debug=debug, verbose=verbose, quiet=quiet, log_format=kopf.LogFormat[log_format.upper()]
    )
    if not (verbose or debug):
        # kopf says "Handler ... succeeded" for every watch event of every object
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    host, port = _address(metrics_address)
    try:
        config = OperatorConfig.build(
            namespaces=namespaces,
            clusterwide=clusterwide,
            standalone=standalone,
            liveness=liveness,
            peering=peering,
            priority=priority,
            kubeconfig=target.kubeconfig,
            context=context,
            metrics_host=host,
            metrics_port=port,
            lease=lease,
            lease_name=lease_name,
            lease_namespace=lease_namespace,
            lease_duration=lease_duration,
            targets=target,
            max_concurrent_runs=max_concurrent_runs,
            clock=Clock.parse(clock),
        )
        run(config)
    except ChaosaaError as exc:
        fail(exc)
