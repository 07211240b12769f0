"""Regions as network namespaces, for systems whose peer discovery defeats a TCP proxy.

Galera's nodes tell each other their real listen addresses (gcomm handshakes and topology
messages) and then connect to those directly: measured here, a node that was given only
proxy addresses in ``wsrep_cluster_address`` still opened direct connections to the others'
``gmcast.listen_addr``. A per-link proxy is therefore bypassed. Instead every region gets a
network namespace with its own address; faults act there as node rules (nft/tc from
:mod:`chaosaa.rules`), which see every packet whatever address the peers learnt.

Layout (``<id>`` random per system; nothing is shared with another lab or test)::

    root ns ── cdb<id> 10.214.N.254 ═╗          (exporters, nodes, tests reach the servers)
                       wire ns: bridge br0
    ns cdb-<id>-0 ── eth0 10.214.N.1 ═╣
    ns cdb-<id>-1 ── eth0 10.214.N.2 ═╣
    ns cdb-<id>-2 ── eth0 10.214.N.3 ═╝

The bridge lives in its own namespace, so the machine's forwarding and firewall settings
are not touched; deleting the namespaces removes every device. Needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from chaosaa.lab.systems._proc import SystemError_, require_binaries
from chaosaa.rules.execute import run_process

log = logging.getLogger(__name__)

PREFIX = "cdb-"
#: the namespaces' subnets: 10.214.N.0/24, N picked free
SUBNET_BASE = "10.214"
DEVICE = "eth0"


@dataclass(frozen=True)
class RegionNamespace:
    region: str
    netns: str
    ip: str
    #: the device node rules shape (tc) in this namespace
    device: str = DEVICE


async def _ip(*argv: str) -> str:
    code, out, err = await run_process(["ip", *argv], None, 10.0)
    if code != 0:
        raise SystemError_(f"ip {' '.join(argv)} failed: {err.strip() or out.strip()}")
    return out


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces (CAP_NET_ADMIN)"
    return require_binaries(["ip"])


class RegionNetwork:
    """One network namespace per region, bridged, plus an address in the root namespace."""

    def __init__(self, regions: Sequence[str]) -> None:
        if len(regions) > 250:
            raise ValueError("at most 250 regions")
        self.id = secrets.token_hex(3)
        self.regions = list(regions)
        self.wire = f"{PREFIX}{self.id}-w"
        self.host_dev = f"cdb{self.id}"
        self.subnet: int | None = None
        self.namespaces: dict[str, RegionNamespace] = {}
        self._created: list[str] = []

    @property
    def created(self) -> list[str]:
        """The namespaces made so far (deleting them removes every device)."""
        return list(self._created)

    @property
    def host_ip(self) -> str:
        return f"{SUBNET_BASE}.{self.subnet}.254"

    async def _free_subnet(self) -> int:
        used = await _ip("-4", "-o", "addr", "show")
        for n in range(1 + secrets.randbelow(200), 255):
            if f" {SUBNET_BASE}.{n}." not in used:
                return n
        raise SystemError_(f"no free {SUBNET_BASE}.N.0/24 subnet for the region namespaces")

    async def create(self) -> None:
        try:
            self.subnet = await self._free_subnet()
            await self._netns(self.wire)
            await _ip("-n", self.wire, "link", "add", "br0", "type", "bridge")
            await _ip("-n", self.wire, "link", "set", "br0", "up")
            await _ip(
                "link",
                "add",
                self.host_dev,
                "type",
                "veth",
                "peer",
                "name",
                "host",
                "netns",
                self.wire,
            )
            await _ip("addr", "add", f"{self.host_ip}/24", "dev", self.host_dev)
            await _ip("link", "set", self.host_dev, "up")
            await _ip("-n", self.wire, "link", "set", "host", "master", "br0", "up")
            for i, region in enumerate(self.regions):
                ns = f"{PREFIX}{self.id}-{i}"
                ip = f"{SUBNET_BASE}.{self.subnet}.{i + 1}"
                await self._netns(ns)
                await _ip(
                    "-n",
                    self.wire,
                    "link",
                    "add",
                    f"r{i}",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    DEVICE,
                    "netns",
                    ns,
                )
                await _ip("-n", self.wire, "link", "set", f"r{i}", "master", "br0", "up")
                await _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", DEVICE)
                await _ip("-n", ns, "link", "set", DEVICE, "up")
                self.namespaces[region] = RegionNamespace(region, ns, ip)
        except BaseException:
            await self.destroy()
            raise

    async def _netns(self, name: str) -> None:
        await _ip("netns", "add", name)
        self._created.append(name)
        await _ip("-n", name, "link", "set", "lo", "up")

    async def destroy(self) -> None:
        """Delete every namespace (their veth pairs, and the root side, go with them)."""
        for name in reversed(self._created):
            with contextlib.suppress(SystemError_):
                await _ip("netns", "del", name)
        self._created.clear()
        with contextlib.suppress(SystemError_):
            await _ip("link", "del", self.host_dev)  # gone already unless the wire ns failed
        self.namespaces.clear()


async def leftover_namespaces() -> list[str]:
    out = await _ip("netns", "list")
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]
