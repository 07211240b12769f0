"""The node containers of kind clusters, reached through the docker CLI.

:class:`KindNodes` is what the kind target's fault handlers work with: each region's node
containers and addresses, ``docker exec`` as a rules transport, one lock and a set of tc
slots per node, and the host-side state directory of the regionDown watchdog.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import tempfile
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from chaosaa.errors import FaultError, TargetUnreachableError
from chaosaa.rules.execute import Transport, run_process
from chaosaa.rules.generate import MAX_SLOT

#: where watchdogs keep their expiry/pid/log files inside a node container (a tmpfs)
NODE_STATE_DIR = "/run/chaosaa"
DEFAULT_DEVICE = "eth0"
ENV_DEVICE = "CHAOSAA_KIND_DEVICE"
DOCKER_TIMEOUT = 30.0


def host_state_dir(state_dir: str | None = None) -> str:
    """Where the host-side (regionDown) watchdogs keep their files."""
    return str(Path(state_dir or tempfile.gettempdir()) / "chaosaa-kind")


async def on_every(work: Iterable[Awaitable[None]]) -> None:
    """Run ``work`` concurrently and wait for all of it, then raise the first failure.

    A ``docker exec`` already sent cannot be called back: whoever handles the failure
    (a revert) must find every node's command finished, not still running.
    """
    for result in await asyncio.gather(*work, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


class DockerRunner(Protocol):
    """The docker CLI seam: run a command to completion (the host-side watchdog too)."""

    async def run(self, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]: ...


class SubprocessDocker:
    """Runs the real docker CLI (and the shell that starts the host-side watchdog)."""

    def __init__(self, timeout: float = DOCKER_TIMEOUT) -> None:
        self.timeout = timeout

    async def run(self, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
        return await run_process(argv, stdin, self.timeout)


@dataclass
class KindRegion:
    name: str
    cluster: str
    nodes: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)


class KindNodes:
    """Every region's node containers, and how to run commands in them."""

    def __init__(
        self, docker: DockerRunner, clusters: dict[str, str], run_id: str, state_dir: str | None
    ) -> None:
        self.docker = docker
        #: region -> kind cluster name
        self.clusters = clusters
        self.run_id = run_id
        #: filled in when the target opens
        self.regions: dict[str, KindRegion] = {}
        self.device = os.environ.get(ENV_DEVICE) or DEFAULT_DEVICE
        #: host-side files of the regionDown watchdog
        self.host_state_dir = host_state_dir(state_dir)
        self._slots: dict[str, set[int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def docker_ok(self, *argv: str, stdin: str | None = None) -> str:
        """``docker ARGV``; a failure means the target is not reachable."""
        code, out, err = await self.docker.run(("docker", *argv), stdin)
        if code != 0:
            raise TargetUnreachableError(
                f"`docker {shlex.join(argv)}` failed: {(err or out).strip()[:300]}"
            )
        return out

    def on(self, node: str) -> Transport:
        """A rules transport running commands in ``node`` through ``docker exec``."""

        async def run(argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
            flags = ("-i",) if stdin is not None else ()
            return await self.docker.run(("docker", "exec", *flags, node, *argv), stdin)

        return run

    async def local(self, argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
        """A rules transport running commands on this host."""
        return await self.docker.run(argv, stdin)

    def lock(self, node: str) -> asyncio.Lock:
        return self._locks.setdefault(node, asyncio.Lock())

    def take_slot(self, node: str) -> int:
        used = self._slots.setdefault(node, set())
        for slot in range(1, MAX_SLOT + 1):
            if slot not in used:
                used.add(slot)
                return slot
        raise FaultError(f"node {node}: no free tc slot")

    def free_slot(self, node: str, slot: int) -> None:
        self._slots.get(node, set()).discard(slot)

    async def paused(self, containers: Sequence[str]) -> dict[str, bool]:
        out = await self.docker_ok("inspect", "-f", "{{.Name}} {{.State.Paused}}", *containers)
        state = {}
        for line in out.splitlines():
            name, _, paused = line.strip().lstrip("/").partition(" ")
            state[name] = paused == "true"
        return state
