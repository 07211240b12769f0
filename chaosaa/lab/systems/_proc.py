"""Server processes of the database systems: who runs them, where their data lives, and
how they are started, waited for and ended.

Database servers are foreign binaries that refuse to run as root (PostgreSQL) or should
not (MariaDB). When chaosaa runs as root they run as the distribution's service user
(``postgres``, ``mysql``) through ``setpriv``; otherwise as the current user. Either way
``setpriv --pdeathsig KILL`` makes the kernel kill the server when the process that started
it dies (the lab supervisor, or a test), even when it is SIGSTOPped (regionDown). The
death signal is set *after* the user change, which would otherwise clear it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import random
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from chaosaa.errors import EnvironmentError_
from chaosaa.rules.execute import run_process

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
T = TypeVar("T")


class SystemError_(EnvironmentError_):
    """A database system could not be started, configured or stopped."""


def _ephemeral_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = HOST) -> int:
    """A port that is free now, for servers that bind it themselves.

    Picked *below* the kernel's ephemeral range: between "free" and the server's bind, any
    outgoing connection on the machine may take an ephemeral port (measured here: a
    postmaster found its port taken by another process's client socket), never one of these.
    """
    floor = _ephemeral_floor()
    for _ in range(100):
        port = random.randrange(10000, max(10001, floor))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ServerUser:
    """The account a server runs as, and how to run a command as it."""

    name: str
    uid: int
    gid: int

    @classmethod
    def for_service(cls, service_user: str) -> ServerUser:
        """``service_user`` (e.g. ``postgres``) when running as root, else the current user."""
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(service_user)
            except KeyError:
                raise SystemError_(
                    f"running as root, but there is no {service_user!r} user to run the server "
                    "as (install the server's Debian package, which creates it)"
                ) from None
        else:
            entry = pwd.getpwuid(os.geteuid())
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run as this user, killed when the process that started it dies."""
        change = []
        if os.geteuid() != self.uid:
            change = [f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups"]
        return ["setpriv", "--pdeathsig=KILL", *change, "--", *argv]

    def chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)

    async def run(self, argv: Sequence[str], what: str, time_limit: float = 60.0) -> str:
        """Run a setup command (initdb, pg_basebackup...) to completion as this user."""
        code, out, err = await run_process(self.wrap(argv), None, time_limit)
        if code != 0:
            tail = "\n".join((out + err).strip().splitlines()[-15:])
            raise SystemError_(f"{what} failed (exit {code}): {tail}")
        return out


class DataRoot:
    """A fresh directory for one system's data, owned by the server user, removed at stop.

    It is made with ``mkdtemp`` under the system temporary directory rather than under the
    caller's directory: a test's ``tmp_path`` or ``~/.chaosaa`` is not traversable by the
    ``postgres`` user, and the server must be able to reach its own data directory.
    """

    def __init__(self, user: ServerUser, prefix: str, base: Path | None = None) -> None:
        self.user = user
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        # 0711: the server user (owner) works inside; others may only traverse to it.
        os.chmod(self.path, 0o711)
        user.chown(self.path)

    def mkdir(self, name: str) -> Path:
        path = self.path / name
        path.mkdir(mode=0o700)
        self.user.chown(path)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class ServerProcess:
    """One long-running server process (postmaster, mariadbd, an exporter)."""

    name: str
    argv: list[str]
    user: ServerUser
    log_path: Path
    env: dict[str, str] | None = None
    #: run inside this network namespace (``ip netns exec``), for systems that need one
    netns: str | None = None
    proc: asyncio.subprocess.Process | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def command(self) -> list[str]:
        wrapped = self.user.wrap(self.argv)
        return ["ip", "netns", "exec", self.netns, *wrapped] if self.netns else wrapped

    async def start(self) -> None:
        # Started from the event loop's thread on purpose: the death signal fires when the
        # *thread* that forked the child ends, so never start a server from a worker thread.
        self._log = self.log_path.open("ab")
        env = None if self.env is None else {**os.environ, **self.env}
        self.proc = await asyncio.create_subprocess_exec(
            *self.command(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        log.info("started %s pid %s", self.name, self.proc.pid)

    async def stop(self, sig: signal.Signals = signal.SIGTERM, grace: float = 15.0) -> None:
        """Ask the server to stop with ``sig``; SIGKILL after ``grace`` seconds."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)  # a frozen (regionDown) server cannot stop
                proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                log.warning("%s did not stop within %ss: killing it", self.name, grace)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


async def until(
    check: Callable[[], Awaitable[T | None]],
    *,
    time_limit: float,
    what: str,
    interval: float = 0.1,
    watch: Sequence[ServerProcess] = (),
) -> T:
    """Poll ``check`` until it returns a value that is not None/False; bounded in time.

    Fails at once, with the log tail, when one of the ``watch``ed processes has exited.
    """
    deadline = time.monotonic() + time_limit
    last_error = ""
    while True:
        for proc in watch:
            if proc.proc is not None and proc.proc.returncode is not None:
                raise SystemError_(
                    f"{proc.name} exited with code {proc.proc.returncode} while waiting for "
                    f"{what}; log {proc.log_path}:\n{proc.log_tail()}"
                )
        try:
            value = await check()
        except Exception as exc:  # not ready yet: connection refused, not in recovery...
            last_error = f"{type(exc).__name__}: {exc}"
            value = None
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise SystemError_(f"timed out after {time_limit:g}s waiting for {what}{detail}")
        await asyncio.sleep(interval)


def require_binaries(paths: Sequence[str]) -> str | None:
    """Why a system cannot run here (a missing binary), or None."""
    for path in paths:
        if os.path.sep in path:
            if not os.path.exists(path):
                return f"{path} not found"
        elif shutil.which(path) is None:
            return f"{path!r} not found on PATH"
    return None
