"""``chaosaa gameday trigger``: start a run of a GameDay custom resource now."""

from __future__ import annotations

import sys
import time

import click

from chaosaa.cli.main import CONTEXT, fail
from chaosaa.errors import ChaosaaError, InvalidInputError, SpecError


@click.group(context_settings=CONTEXT)
def gameday() -> None:
    """GameDay custom resources in a cluster (the operator runs them)."""


@gameday.command(context_settings=CONTEXT)
@click.argument("name")
@click.option("-n", "--namespace", default=None, help="[default: the context's namespace]")
@click.option("--kubeconfig", envvar="KUBECONFIG", default=None)
@click.option("--context", default=None, help="kube context [default: the current one]")
def trigger(name: str, namespace: str | None, kubeconfig: str | None, context: str | None) -> None:
    """Create a GameDayRun of GameDay NAME now; the operator executes it.

    The run gets the GameDay's spec as it is now, the label chaosaa.io/trigger=manual and
    the name NAME-manual-<hash>. The concurrency policy applies to scheduled runs only.

    \b
    Example:
      $ chaosaa gameday trigger region-down -n chaos
      created gamedayrun chaos/region-down-manual-3f2a9c01d4
    """
    import asyncio

    from chaosaa.kube import current_namespace, load_api_client
    from chaosaa.operator import runs
    from chaosaa.operator.kube import Kube
    from chaosaa.operator.schedule import manual_run_name

    async def go() -> str:
        api = load_api_client(kubeconfig, context)
        ns = namespace or current_namespace(kubeconfig, context)
        kube = Kube(api, workers=1)
        try:
            body = await kube.get(runs.GAMEDAYS, ns, name)
            if body is None:
                raise InvalidInputError(f"no GameDay {ns}/{name}")
            try:
                runs.validate_object(body)
            except SpecError as exc:
                raise SpecError(
                    [f"not triggering an invalid GameDay: {p}" for p in exc.problems]
                ) from None
            run = manual_run_name(name, f"cli-{time.time_ns()}")
            await kube.create(
                runs.GAMEDAYRUNS, ns, runs.run_manifest(body, name=run, trigger="manual")
            )
            return f"{ns}/{run}"
        finally:
            kube.close()

    try:
        created = asyncio.run(go())
    except ChaosaaError as exc:
        fail(exc)
    click.echo(f"created gamedayrun {created}")
    sys.exit(0)
