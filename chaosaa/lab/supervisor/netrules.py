"""Node rules in the network namespaces of a system's regions (Galera): applied, read back,
observed and reverted by the supervisor.

The rules are the ones every transport runs (:mod:`chaosaa.rules.generate`): nft chains in
chaosaa's own table and tc classes under chaosaa's own root qdisc, here executed with
``ip netns exec`` in the region's namespace. A fault's rules carry its TTL through the
supervisor's dead-man switch, and vanish with the namespaces at shutdown whatever happens.

Verification observes a cut from where the traffic starts: a TCP connection opened
*inside* the source region's namespace (``setns`` in a thread of its own) to a peer must
get no answer within the hold window; after the revert it connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from chaosaa.errors import FaultError
from chaosaa.lab.supervisor.system import RegionNetwork
from chaosaa.rules.execute import execute, run_process
from chaosaa.rules.generate import NodeRules, absent, present, readback, rules_for
from chaosaa.rules.model import NodeFault

#: tc slots 1..255 per device
_SLOTS = range(1, 256)
_CLONE_NEWNET = 0x40000000
#: how long a command in a namespace may take
COMMAND_TIMEOUT = 10.0

Reach = Literal["connected", "held", "refused"]


@dataclass(frozen=True)
class AppliedRules:
    region: str
    rules: NodeRules


class Namespaces:
    """The regions' namespaces, and the rules chaosaa put there."""

    def __init__(self, network: Callable[[], Mapping[str, RegionNetwork]]) -> None:
        #: the namespaces exist once the system runs: asked for each time
        self._network = network
        self._slots: dict[str, set[int]] = {}

    @property
    def network(self) -> Mapping[str, RegionNetwork]:
        return self._network()

    def _transport(self, region: str) -> _Shell:
        return _Shell(self.network[region].netns)

    async def apply(self, region: str, fault: NodeFault) -> AppliedRules:
        """Install ``fault``'s rules in ``region``'s namespace (RuleError if they fail)."""
        used = self._slots.setdefault(region, set())
        slot = next((s for s in _SLOTS if s not in used), None)
        if slot is None:
            raise FaultError(f"region {region}: no free tc slot (255 faults active)")
        rules = rules_for(fault, slot, self.network[region].device)
        used.add(slot)
        applied = AppliedRules(region, rules)
        try:
            await execute(rules.apply, self._transport(region))
        except BaseException:
            await self.revert(applied)
            raise
        return applied

    async def revert(self, applied: AppliedRules) -> None:
        with contextlib.suppress(FaultError):
            await execute(applied.rules.revert, self._transport(applied.region))
        self._slots.get(applied.region, set()).discard(applied.rules.slot)

    async def listings(self, region: str) -> tuple[str, str]:
        """(nft table listing, tc qdisc listing) in ``region``'s namespace."""
        shell = self._transport(region)
        nft_cmd, tc_cmd = readback(self.network[region].device)
        _, nft, _ = await shell(nft_cmd, None)
        _, tc, _ = await shell(tc_cmd, None)
        return nft, tc

    async def in_place(self, applied: AppliedRules) -> bool:
        return present(applied.rules, *await self.listings(applied.region))

    async def removed(self, applied: AppliedRules) -> bool:
        return absent(applied.rules, *await self.listings(applied.region))

    async def reach(self, region: str, ip: str, port: int, window: float) -> Reach:
        """Connect from inside ``region``'s namespace to ``ip:port`` within ``window``."""
        return await _reach_from(self.network[region].netns, ip, port, window)


class _Shell:
    def __init__(self, netns: str) -> None:
        self.prefix = ("ip", "netns", "exec", netns)

    async def __call__(self, argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
        return await run_process((*self.prefix, *argv), stdin, COMMAND_TIMEOUT)


_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _connect_in(netns: str, ip: str, port: int, window: float) -> Reach:
    """In a thread of its own: enter ``netns``, open a socket there (a socket stays in the
    namespace it was made in), and connect. The thread ends afterwards, so no other work
    ever runs in a namespace it did not ask for."""
    with open(f"/run/netns/{netns}") as ns:
        _setns(ns.fileno())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(window)
    try:
        sock.connect((ip, port))
    except TimeoutError:
        return "held"
    except OSError:
        return "refused"
    finally:
        sock.close()
    return "connected"


async def _reach_from(netns: str, ip: str, port: int, window: float) -> Reach:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Reach] = loop.create_future()

    def settle(result: Reach) -> None:
        if not done.done():
            done.set_result(result)

    def run() -> None:
        try:
            result = _connect_in(netns, ip, port, window)
        except OSError:
            result = "refused"
        loop.call_soon_threadsafe(settle, result)

    threading.Thread(target=run, name=f"reach-{netns}", daemon=True).start()
    async with asyncio.timeout(window + COMMAND_TIMEOUT):
        return await done
