"""The lab's child processes: spawned with the supervisor's sockets, watched, frozen and
thawed (regionDown), stopped. Children die with the supervisor (``PR_SET_PDEATHSIG``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from chaosaa.lab._procfs import descendants, process_state
from chaosaa.lab.paths import child_environment

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    pass_fds: tuple[int, ...] = ()
    #: answers 200 while the process serves (None: being alive is all there is to check)
    health_url: str | None = None
    proc: asyncio.subprocess.Process | None = None
    exit_reported: bool = False
    #: called right before the process starts (writes a config known only then)
    prepare: Callable[[], None] | None = None


class Processes:
    """Every child of the lab, by name, in start order."""

    def __init__(self, children: dict[str, Child]) -> None:
        self.children = children
        self._log_files: list[IO[bytes]] = []

    async def spawn_all(self) -> None:
        await self.spawn(list(self.children))

    async def spawn(self, names: Iterable[str]) -> None:
        """Start these children, in this order (each once)."""
        env = child_environment()
        for name in names:
            child = self.children[name]
            if child.proc is not None:
                continue
            if child.prepare is not None:
                await asyncio.to_thread(child.prepare)
            logf = await asyncio.to_thread(child.log_path.open, "ab")
            self._log_files.append(logf)
            child.proc = await asyncio.create_subprocess_exec(
                *child.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logf,
                stderr=asyncio.subprocess.STDOUT,
                pass_fds=child.pass_fds,
                env=env,
            )
            log.info("started %s pid %s", child.name, child.proc.pid)

    async def watch(self) -> None:
        """Log each child that exits (once)."""
        while True:
            for child in self.children.values():
                if child.proc and child.proc.returncode is not None and not child.exit_reported:
                    child.exit_reported = True
                    log.error("%s exited with code %s", child.name, child.proc.returncode)
            await asyncio.sleep(0.5)

    async def stop_all(self) -> None:
        procs = [c.proc for c in self.children.values() if c.proc and c.proc.returncode is None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)  # a SIGSTOPped node cannot handle SIGTERM
                proc.terminate()
        deadline = time.monotonic() + 5.0
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for f in self._log_files:
            f.close()

    def running_pid(self, name: str) -> int | None:
        proc = self.children[name].proc
        return None if proc is None or proc.returncode is not None else proc.pid

    def detail(self, name: str) -> tuple[bool, str | None, int | None]:
        """(alive, why not, pid) of a child."""
        child = self.children[name]
        if child.proc is None:
            return False, "not started", None
        if child.proc.returncode is not None:
            return False, f"exited with code {child.proc.returncode} (see {child.log_path})", None
        return True, None, child.proc.pid


async def freeze(pids: Iterable[int]) -> None:
    """SIGSTOP each process and its descendants (a PostgreSQL server is a postmaster and
    the backends it forked: freezing the postmaster alone would leave every open session
    serving); return once /proc shows them stopped. A stopped parent forks no more, so
    its descendants are listed after it stopped."""
    for pid in pids:
        await _signal([pid], signal.SIGSTOP, stopped=True)
        await _signal(await asyncio.to_thread(descendants, pid), signal.SIGSTOP, stopped=True)


async def thaw(pids: Iterable[int]) -> None:
    """SIGCONT each process and its descendants; return once /proc shows them running."""
    for pid in pids:
        tree = [*await asyncio.to_thread(descendants, pid), pid]
        await _signal(tree, signal.SIGCONT, stopped=False)


async def _signal(pids: Iterable[int], sig: signal.Signals, *, stopped: bool) -> None:
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # a descendant may have exited
            os.kill(pid, sig)
    for pid in pids:
        await _wait_state(pid, stopped=stopped)


async def _wait_state(pid: int, *, stopped: bool, limit: float = 2.0) -> None:
    """Signals are delivered asynchronously: wait until /proc shows the new state, so
    that answering the API means the fault is in place (or gone)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        state = await asyncio.to_thread(process_state, pid)
        if state in (None, "Z") or (state == "T") == stopped:
            return
        await asyncio.sleep(0.005)
    log.warning(
        "process %s did not become %s in %ss", pid, "stopped" if stopped else "running", limit
    )


async def is_stopped(pid: int) -> bool:
    """The process and every descendant it has are stopped."""

    def tree_stopped() -> bool:
        return all(process_state(p) in ("T", "Z", None) for p in descendants(pid)) and (
            process_state(pid) == "T"
        )

    return await asyncio.to_thread(tree_stopped)


async def watch_owner(pid: int, shutdown: asyncio.Event) -> None:
    """Shut down once the process that owns this ephemeral lab is gone (even SIGKILL)."""
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.warning("owner process %d is gone: shutting the ephemeral lab down", pid)
            shutdown.set()
            return
        except PermissionError:
            pass  # exists, owned by someone else
        await asyncio.sleep(1.0)
