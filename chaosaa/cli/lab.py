"""``chaosaa lab up|down|status``: the local multi-region lab (DESIGN.md section 7)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from chaosaa.errors import ChaosaaError, InvalidInputError
from chaosaa.lab import control
from chaosaa.lab.paths import ENV_STATE_DIR
from chaosaa.lab.supervisor.databases import SYSTEM_NAMES

console = Console(stderr=True)
out = Console()

_STATE_DIR_HELP = f"Lab state directory [default: ${ENV_STATE_DIR} or ~/.chaosaa/lab]."


def _fail(exc: ChaosaaError) -> None:
    # soft_wrap: never break the message, so it stays greppable in logs and CI output
    console.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
    sys.exit(int(exc.exit_code))


@click.group()
def lab() -> None:
    """Local multi-region active-active lab on 127.0.0.1.

    \b
    Example:
      chaosaa lab up --regions us,eu,ap
      ROUTER=$(chaosaa lab status -o json | jq -r .router)
      curl -X PUT -H 'X-Chaosaa-Home: eu' --data hello "$ROUTER/kv/greeting"
      curl -H 'X-Chaosaa-Home: ap' "$ROUTER/kv/greeting"
      SUP=$(chaosaa lab status -o json | jq -r .supervisor)
      curl -X POST "$SUP/faults" -d '{"type": "blackhole", "regions": ["eu"], "ttl": "30s"}'
      chaosaa lab down

    The fault API, endpoints and metrics are described in docs/lab.md.
    """


@lab.command()
@click.option(
    "--regions",
    default="us,eu,ap",
    show_default=True,
    help="Comma-separated region names (2-8 recommended).",
)
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, help=_STATE_DIR_HELP)
@click.option(
    "--system",
    type=click.Choice(SYSTEM_NAMES),
    default="demo",
    show_default=True,
    help="What runs in the regions: the SQLite demo, or real databases (docs/lab.md).",
)
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Seconds to wait for health [default: 60; 300 for a database system].",
)
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option(
    "--capacity",
    "capacities",
    multiple=True,
    metavar="[REGION:]KEY=VALUE,...",
    help="Service capacity of every region, or of REGION (repeatable; a region's fields "
    "override the all-regions ones): concurrency=N (requests served at once), "
    "serviceTime=DURATION (each one's time), queue=N (waiting before 503s); "
    "e.g. concurrency=4,serviceTime=25ms,queue=8 (4 / 25ms = 160 req/s). Default: unlimited.",
)
@click.option(
    "--owner-pid",
    type=int,
    default=None,
    hidden=True,
    help="Ephemeral lab: stop by itself when this process exits (used by `chaosaa run`).",
)
def up(
    regions: str,
    state_dir: str | None,
    timeout: float | None,
    output: str,
    capacities: tuple[str, ...],
    system: str,
    owner_pid: int | None,
) -> None:
    """Start the lab and return once every component is healthy.

    Starts, as unprivileged processes under one detached supervisor: a demo node per
    region, the global router, the link proxies and Prometheus (scraping every 1s).
    With --system the nodes store in real databases that replicate by themselves:
    postgres-ha (a primary and streaming standbys: multi-region, not active-active),
    postgres-aa (pglogical both ways), galera (MariaDB Galera; needs root for its
    network namespaces).

    \b
    Examples:
      chaosaa lab up
      chaosaa lab up --regions us,eu --state-dir /tmp/lab2 -o json
      chaosaa lab up --capacity concurrency=4,serviceTime=25ms,queue=8 --capacity ap:concurrency=2
      chaosaa lab up --system postgres-aa
    """

    def progress(name: str, healthy: bool, detail: str | None) -> None:
        if healthy:
            console.print(f"  [green]✓[/] {name}")
        else:
            console.print(f"  [dim]… {name}: {detail or 'starting'}[/]")

    console.print(f"Starting lab ({regions}, system {system}) …")
    names = [r.strip() for r in regions.split(",") if r.strip()]
    try:
        status = control.up(
            names,
            state_dir,
            timeout=timeout,
            progress=progress,
            owner_pid=owner_pid,
            capacity=parse_capacity_options(capacities, names),
            system=system,
        )
    except ChaosaaError as exc:
        _fail(exc)
        return
    if output == "json":
        out.print_json(json.dumps(status))
    else:
        console.print("[bold green]Lab is up.[/]")
        _print_table(status)


@lab.command()
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, help=_STATE_DIR_HELP)
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def status(state_dir: str | None, output: str) -> None:
    """Show the lab's endpoints, health and active faults.

    Exits 4 when no lab is running.

    \b
    Examples:
      chaosaa lab status
      chaosaa lab status -o json | jq '.regions.eu'
    """
    try:
        result = control.status(state_dir)
    except ChaosaaError as exc:
        _fail(exc)
        return
    if output == "json":
        click.echo(json.dumps(result, indent=2))
    else:
        _print_table(result)


@lab.command()
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, help=_STATE_DIR_HELP)
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for stop."
)
def down(state_dir: str | None, timeout: float) -> None:
    """Stop the lab: every process, port and lock it owned is released.

    Faults still active are reverted first. Running it when no lab runs is not an error.

    \b
    Examples:
      chaosaa lab down
      CHAOSAA_LAB_STATE=/tmp/lab2 chaosaa lab down
    """
    try:
        stopped = control.down(state_dir, timeout=timeout)
    except ChaosaaError as exc:
        _fail(exc)
        return
    console.print("Lab stopped." if stopped else "No lab was running.")


def parse_capacity_options(options: tuple[str, ...], regions: list[str]) -> dict[str, Any]:
    """``("concurrency=4,serviceTime=25ms", "ap:concurrency=2")`` -> region -> capacity
    document; ``none`` (or ``unlimited``) for a field means no limit."""
    every: dict[str, Any] = {}
    own: dict[str, dict[str, Any]] = {}
    for option in options:
        region, _, fields = option.rpartition(":")
        doc = every if not region else own.setdefault(region, {})
        for item in filter(None, (f.strip() for f in fields.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise InvalidInputError(f"--capacity {option}: {item!r} is not KEY=VALUE")
            doc[key.strip()] = _capacity_value(value.strip())
    if not every and not own:
        return {}
    return {r: {**every, **own.get(r, {})} for r in dict.fromkeys([*regions, *own])}


def _capacity_value(text: str) -> int | str | None:
    if text.lower() in ("none", "null", "unlimited"):
        return None
    return int(text) if text.isdigit() else text


def _print_table(status: dict[str, Any]) -> None:
    table = Table(title=f"chaosaa lab — {status.get('stateDir')}")
    table.add_column("component")
    table.add_column("url")
    table.add_column("health")
    for name, region in status.get("regions", {}).items():
        health = "[green]healthy[/]" if region.get("healthy") else "[red]unhealthy[/]"
        if region.get("stopped"):
            health = "[red]stopped[/]"
        if region.get("routerUp") is False:
            health += " [yellow](router: down)[/]"
        table.add_row(f"region {name}", f"{region['url']} (node {region['nodeUrl']})", health)
    comps = status.get("components", {})
    system = status.get("system") or {}
    if system.get("name", "demo") != "demo":
        ok = comps.get(system["name"], {}).get("healthy")
        where = ", ".join(
            f"{r} {d['database']['host']}:{d['database']['port']}"
            for r, d in system.get("regions", {}).items()
            if "database" in d
        )
        table.add_row(
            f"system {system['name']}", where, "[green]healthy[/]" if ok else "[red]unhealthy[/]"
        )
    for name, key in (("router", "router"), ("prometheus", "prometheus")):
        ok = comps.get(name, {}).get("healthy")
        table.add_row(
            name, str(status.get(key)), "[green]healthy[/]" if ok else "[red]unhealthy[/]"
        )
    ok = comps.get("proxy", {}).get("healthy")
    table.add_row(
        "link proxies",
        str(status.get("proxy", {}).get("admin")),
        "[green]healthy[/]" if ok else "[red]unhealthy[/]",
    )
    table.add_row("supervisor (fault API)", str(status.get("supervisor")), "")
    out.print(table)
    faults = status.get("faults", [])
    if faults:
        ft = Table(title="active faults")
        for col in ("id", "type", "expires in"):
            ft.add_column(col)
        for f in faults:
            ft.add_row(f["id"], f["type"], f"{f['expiresIn']:.1f}s")
        out.print(ft)
    else:
        out.print("no active faults")


if __name__ == "__main__":  # usable before registration: python -m chaosaa.cli.lab up
    lab()
