"""``chaosaa agent``: the node agent (one per node, a DaemonSet in a cluster)."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TYPE_CHECKING

import click

from chaosaa.errors import ChaosaaError, ExitCode

if TYPE_CHECKING:
    from chaosaa.agent.agent import AgentConfig
    from chaosaa.kube.client import ApiClient

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


async def _serve(agent_config: AgentConfig, api: ApiClient) -> None:
    from chaosaa.agent.agent import Agent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await Agent(agent_config, api).run(stop)


@click.command(context_settings=CONTEXT)
@click.option("--node", envvar="NODE_NAME", default=None, help="This node's name (env NODE_NAME).")
@click.option("--kubeconfig", envvar="KUBECONFIG", default=None, help="kubeconfig file.")
@click.option("--context", default=None, help="kube context (default: the current one).")
@click.option(
    "--netns", default=None, help="Apply rules inside this network namespace (tests, labs)."
)
@click.option(
    "--device",
    envvar="CHAOSAA_AGENT_DEVICE",
    default=None,
    help="Network device for tc rules [default: the route to the peers].",
)
@click.option(
    "--namespace",
    envvar="CHAOSAA_NAMESPACE",
    default="chaosaa-system",
    show_default=True,
    help="Namespace of the agent's heartbeat Lease.",
)
@click.option(
    "--janitor",
    is_flag=True,
    envvar="CHAOSAA_JANITOR",
    help="Also restore expired scale-downs, cordons and NetworkPolicies cluster-wide.",
)
def agent(
    node: str | None,
    kubeconfig: str | None,
    context: str | None,
    netns: str | None,
    device: str | None,
    namespace: str,
    janitor: bool,
) -> None:
    """Run the node agent: apply this node's NetworkFaults as nft/tc rules.

    The agent watches NetworkFault objects (chaosaa.io/v1alpha1) for --node, applies
    their rules, reports status, and reverts them when the object is deleted or when
    its expiry is not renewed in time (the dead-man switch: within ttlSeconds + 1s of
    the last renewal). At start it removes every chaosaa rule left on the node; on
    SIGTERM it reverts everything it applied. Needs NET_ADMIN.

    \b
    Examples:
      $ NODE_NAME=worker-1 chaosaa agent                 # in the DaemonSet
      $ chaosaa agent --node eu-node-0 --netns node0 --kubeconfig kc.yaml
      $ chaosaa agent --janitor                          # only the janitor
    """
    from chaosaa.agent.agent import AgentConfig
    from chaosaa.kube import load_api_client

    if not node and not janitor:
        raise click.UsageError("give --node (or NODE_NAME), or --janitor")
    try:
        api = load_api_client(kubeconfig, context)
        cfg = AgentConfig(
            node=node, netns=netns, device=device, namespace=namespace, janitor=janitor
        )
        asyncio.run(_serve(cfg, api))
    except ChaosaaError as exc:
        click.echo(f"chaosaa: error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    sys.exit(int(ExitCode.PASSED))
