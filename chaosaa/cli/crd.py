"""``chaosaa crd render``: the CustomResourceDefinitions, generated from the models."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from chaosaa.cli.main import CONTEXT

CHART_CRDS = Path("charts/chaosaa/crds")


def all_crds() -> list[dict[str, Any]]:
    """GameDay and GameDayRun (from the GameDay models), and the agent's NetworkFault."""
    from chaosaa.spec.crd import render_crds

    crds = render_crds()
    try:
        from chaosaa.agent.crd import networkfault_crd
    except ModuleNotFoundError as exc:  # a build without the agent
        if not (exc.name or "").startswith("chaosaa.agent"):
            raise
    else:
        crds.append(networkfault_crd())
    return crds


def rendered_files() -> dict[str, str]:
    """File name -> content, as checked in under charts/chaosaa/crds/."""
    from chaosaa.spec.crd import file_name, to_yaml

    return {file_name(crd): to_yaml([crd]) for crd in all_crds()}


@click.group(context_settings=CONTEXT)
def crd() -> None:
    """The chaosaa CustomResourceDefinitions (GameDay, GameDayRun, NetworkFault)."""


@crd.command(context_settings=CONTEXT)
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write one file per CRD here (e.g. charts/chaosaa/crds) instead of printing them.",
)
@click.option(
    "--check",
    "check_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Exit 1 if the files in this directory differ from what would be rendered.",
)
def render(output_dir: Path | None, check_dir: Path | None) -> None:
    """Print the CRDs generated from the pydantic models (a structural openAPIV3Schema).

    \b
    Examples:
      $ chaosaa crd render | kubectl apply --server-side -f -
      $ chaosaa crd render -o charts/chaosaa/crds
      $ chaosaa crd render --check charts/chaosaa/crds     # CI: is the chart up to date?
    """
    files = rendered_files()
    if check_dir is not None:
        stale = [
            name
            for name, text in files.items()
            if not (check_dir / name).is_file() or (check_dir / name).read_text() != text
        ]
        for name in stale:
            click.echo(
                f"{check_dir / name}: out of date; run chaosaa crd render -o {check_dir}", err=True
            )
        sys.exit(1 if stale else 0)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (output_dir / name).write_text(text)
            click.echo(f"wrote {output_dir / name}")
        return
    click.echo("---\n".join(files.values()), nl=False)
