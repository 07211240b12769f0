"""The node side of the agent: running generated commands, finding devices.

Commands run as subprocesses of the agent (which has NET_ADMIN in the host network
namespace), or inside ``ip netns exec NAME`` when the agent stands in for a node in tests.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Sequence

from chaosaa.errors import FaultError
from chaosaa.rules.execute import run_process

log = logging.getLogger(__name__)

_DEV = re.compile(r"\bdev (\S+)")


class NodeShell:
    """Runs argv lists on the node (optionally inside a network namespace)."""

    def __init__(self, netns: str | None = None, timeout: float = 10.0) -> None:
        self.netns = netns
        self.timeout = timeout
        self.prefix: tuple[str, ...] = ("ip", "netns", "exec", netns) if netns else ()

    async def __call__(self, argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
        return await run_process((*self.prefix, *argv), stdin, self.timeout)


async def devices(shell: NodeShell) -> list[str]:
    """Names of the node's network devices (``ip -o link show``)."""
    code, out, err = await shell(("ip", "-o", "link", "show"), None)
    if code != 0:
        raise FaultError(f"cannot list network devices: {err.strip()}")
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return [n for n in names if n]


def _probe_address(cidr: str) -> str:
    net = ipaddress.ip_network(cidr, strict=False)
    if net.num_addresses <= 2:
        return str(net.network_address)
    return str(net.network_address + 1)


async def route_device(shell: NodeShell, peers: Sequence[str]) -> str:
    """The device traffic to ``peers`` leaves through (else the default route's device)."""
    for cidr in peers[:3]:
        code, out, _ = await shell(("ip", "-o", "route", "get", _probe_address(cidr)), None)
        if code == 0 and (m := _DEV.search(out)) and m.group(1) != "lo":
            return m.group(1)
    for family in ("-4", "-6"):
        code, out, _ = await shell(("ip", family, "-o", "route", "show", "default"), None)
        if code == 0 and (m := _DEV.search(out)):
            return m.group(1)
    raise FaultError(
        "cannot tell which network device reaches the peers (no route, no default route); "
        "give the agent --device"
    )
