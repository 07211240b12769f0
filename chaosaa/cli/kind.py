"""``chaosaa kind up|down``: kind clusters per region with the demo (DESIGN.md section 8)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from chaosaa.errors import ChaosaaError
from chaosaa.kindsetup.operator import NAMESPACE, OperatorInstall
from chaosaa.kindsetup.options import ClusterOptions
from chaosaa.kindsetup.runner import DryRunRunner, Runner, SubprocessRunner
from chaosaa.kindsetup.setup import KindSetup
from chaosaa.kindsetup.topology import DEFAULT_REGIONS, load_topology

console = Console(stderr=True)

_ROOT_HELP = "Repository root: holds kind-configs/ and deploy/ [default: .]."
_STATE_HELP = "Where the target file and rendered manifests go [default: ROOT/.chaosaa]."


def _fail(exc: ChaosaaError) -> None:
    console.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
    sys.exit(int(exc.exit_code))


def _setup(
    root: Path,
    state_dir: Path | None,
    regions: str,
    dry_run: bool,
    options: ClusterOptions | None = None,
    base_image: str | None = None,
) -> KindSetup:
    names = tuple(r.strip() for r in regions.split(",") if r.strip())
    topology = load_topology(root, names, options)
    runner: Runner = (
        DryRunRunner(echo=lambda cmd: click.echo(f"$ {cmd}")) if dry_run else SubprocessRunner()
    )
    step = 0

    def progress(message: str) -> None:
        nonlocal step
        step += 1
        if dry_run:
            click.echo(f"# {message}")
        else:
            console.print(f"[dim]{step:>2}.[/] {escape(message)}", soft_wrap=True)

    return KindSetup(
        root=root,
        topology=topology,
        runner=runner,
        state_dir=state_dir or root / ".chaosaa",
        progress=progress,
        base_image=base_image or None,
    )


_options = [
    click.option(
        "--root",
        type=click.Path(file_okay=False, exists=True, path_type=Path),
        default=Path("."),
        help=_ROOT_HELP,
    ),
    click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help=_STATE_HELP),
    click.option(
        "--regions",
        default=",".join(DEFAULT_REGIONS),
        show_default=True,
        help="Regions, each with kind-configs/<region>.yaml; the first is the hub.",
    ),
    click.option("--dry-run", is_flag=True, help="Print the commands; run and write nothing."),
]


def _with_options(fn: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_options):
        fn = option(fn)
    return fn


@click.group()
def kind() -> None:
    """kind clusters, one per region, running the demo (needs Docker, kind, kubectl).

    \b
    Example:
      chaosaa kind up                                   # ~5 min: 3 clusters + the demo
      chaosaa validate .chaosaa/kind-target.yaml
      chaosaa run experiments/kind/region-down.yaml --report-dir out
      chaosaa kind down

    Step by step, ports and routes: docs/kind.md.
    """


@kind.command()
@_with_options
@click.option(
    "--node-image",
    envvar="CHAOSAA_KIND_NODE_IMAGE",
    metavar="IMAGE",
    help="kind node image to use instead of the pinned digest in kind-configs/ "
    "(a local image: no pull). [env: CHAOSAA_KIND_NODE_IMAGE]",
)
@click.option(
    "--workers",
    type=click.IntRange(0, 1),
    envvar="CHAOSAA_KIND_WORKERS",
    help="Worker nodes per cluster, 0 or 1 [default: as in kind-configs/, 1]; "
    "0 saves CPU. [env: CHAOSAA_KIND_WORKERS]",
)
@click.option(
    "--base-image",
    envvar="CHAOSAA_KIND_BASE_IMAGE",
    metavar="IMAGE",
    help="Base image of the demo image (deploy/Dockerfile's BASE_IMAGE) "
    "[default: python:3.11-slim]. [env: CHAOSAA_KIND_BASE_IMAGE]",
)
def up(
    root: Path,
    state_dir: Path | None,
    regions: str,
    dry_run: bool,
    node_image: str | None,
    workers: int | None,
    base_image: str | None,
) -> None:
    """Create the clusters, build and load the demo image, deploy, wait, write the target file.

    Preflight first: the Docker engine must run, kind and kubectl must be on PATH, no
    cluster of ours may exist, the host ports must be free and a --node-image must be
    in the local engine; otherwise exit 4 with every problem listed and nothing touched.
    Clusters come from kind-configs/; the hub (first region) also runs the router
    (http://127.0.0.1:20080) and Prometheus (http://127.0.0.1:20090). Writes
    STATE_DIR/kind-target.yaml.

    On a cgroup v1 Docker host the kubelet is told to accept cgroup v1 (failCgroupV1:
    false). With --node-image, --workers or that, the kind config is rendered to
    STATE_DIR/kind/<region>-cluster.yaml; nothing else changes.

    \b
    Examples:
      chaosaa kind up
      chaosaa kind up --dry-run            # print every command
      chaosaa kind up --workers 0          # control planes only: less CPU
    \b
    Air-gapped (images built locally by `make kind-images`, see docs/kind.md):
      chaosaa kind up --node-image chaosaa.local/kind-node:v1.37.2 \\
                      --base-image chaosaa.local/python:3.11-bookworm
    """
    options = ClusterOptions(node_image=node_image or None, workers=workers)
    try:
        setup = _setup(root, state_dir, regions, dry_run, options, base_image)
        path = setup.up()
    except ChaosaaError as exc:
        _fail(exc)
        return
    if not dry_run:
        topo = setup.topology
        console.print(f"[green]✓[/] kind clusters ready; target file: {path}")
        console.print(f"  router      {topo.router_url}")
        console.print(f"  prometheus  {topo.prometheus_url}")
        for rc in topo.regions:
            console.print(f"  {rc.region:<11} {rc.endpoint}  (context {rc.context})")


@kind.command()
@_with_options
@click.option(
    "--base-image",
    envvar="CHAOSAA_KIND_BASE_IMAGE",
    metavar="IMAGE",
    help="Base image of the chaosaa image (deploy/Dockerfile's BASE_IMAGE) "
    "[default: python:3.11-slim]. [env: CHAOSAA_KIND_BASE_IMAGE]",
)
@click.option(
    "--helm",
    envvar="CHAOSAA_HELM",
    default="helm",
    show_default=True,
    help="The helm binary. [env: CHAOSAA_HELM]",
)
@click.option("--no-build", is_flag=True, help="Do not rebuild and load the image.")
def operator(
    root: Path,
    state_dir: Path | None,
    regions: str,
    dry_run: bool,
    base_image: str | None,
    helm: str,
    no_build: bool,
) -> None:
    """Install the Helm chart on clusters `chaosaa kind up` made: GameDays run in the hub.

    The hub (first region) gets the operator and the agent DaemonSet, every other region
    the agent only (operator.enabled=false), all in namespace chaosaa-system, image
    chaosaa-demo:kind (rebuilt and `kind load`ed unless --no-build). Each region's
    kubeconfig (the hub's too), with its API server's in-docker-network address (`kind get
    kubeconfig --internal`), becomes Secret chaosaa-kubeconfig-<region> in the hub: the Secrets
    experiments/kind/operator/*.yaml name.

    \b
    Examples:
      chaosaa kind operator --dry-run
      chaosaa kind operator && kubectl --context kind-chaosaa-us apply -n chaosaa-system \\
          -f experiments/kind/operator/region-down-monthly.yaml
    """
    try:
        setup = _setup(root, state_dir, regions, dry_run, None, base_image)
        OperatorInstall(setup, helm=helm, build=not no_build).run()
    except ChaosaaError as exc:
        _fail(exc)
        return
    if not dry_run:
        hub = setup.topology.hub
        console.print(
            f"[green]✓[/] chaosaa installed; GameDays go to {hub.context}, namespace {NAMESPACE}"
        )


@kind.command()
@_with_options
def down(root: Path, state_dir: Path | None, regions: str, dry_run: bool) -> None:
    """Delete the clusters, the target file and the rendered manifests.

    \b
    Example:
      chaosaa kind down
    """
    try:
        _setup(root, state_dir, regions, dry_run).down()
    except ChaosaaError as exc:
        _fail(exc)
        return
    if not dry_run:
        console.print("[green]✓[/] kind clusters deleted")
