"""The one seam to the outside world: the docker, kind and kubectl command lines.

Everything ``chaosaa kind up|down`` does to Docker and the clusters is a command run
through a :class:`Runner`. :class:`SubprocessRunner` runs them, :class:`DryRunRunner` only
prints them, and tests pass a recording fake to assert the exact command sequence.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chaosaa.errors import EnvironmentError_

log = logging.getLogger(__name__)


class CommandError(EnvironmentError_):
    """An external command failed or timed out (exit 4)."""


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 15) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return "\n".join(text[-lines:])


class Runner(Protocol):
    #: True when commands are only printed: callers use placeholders for their output.
    dry_run: bool

    def which(self, program: str) -> str | None:
        """Path of ``program`` on PATH, or None."""

    def run(self, argv: Sequence[str], *, timeout: float, check: bool = True) -> Completed:
        """Run ``argv`` (no shell); raise CommandError when ``check`` and it fails."""


def describe(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def _failed(result: Completed) -> CommandError:
    detail = result.tail()
    return CommandError(
        f"`{describe(result.argv)}` failed with exit code {result.returncode}"
        + (f":\n{detail}" if detail else "")
    )


class SubprocessRunner:
    dry_run = False

    def which(self, program: str) -> str | None:
        return shutil.which(program)

    def run(self, argv: Sequence[str], *, timeout: float, check: bool = True) -> Completed:
        log.debug("running %s", describe(argv), extra={"argv": list(argv)})
        try:
            proc = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except FileNotFoundError:
            raise CommandError(f"`{argv[0]}` not found on PATH") from None
        except subprocess.TimeoutExpired:
            raise CommandError(f"`{describe(argv)}` did not finish within {timeout:g}s") from None
        result = Completed(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
        if check and not result.ok:
            raise _failed(result)
        return result


@dataclass
class DryRunRunner:
    """Prints every command instead of running it; every command "succeeds"."""

    echo: Callable[[str], None]
    dry_run: bool = True
    commands: list[tuple[str, ...]] = field(default_factory=list)

    def which(self, program: str) -> str | None:
        return program

    def run(self, argv: Sequence[str], *, timeout: float, check: bool = True) -> Completed:
        self.commands.append(tuple(argv))
        self.echo(describe(argv))
        return Completed(tuple(argv), 0)


def check_result(result: Completed) -> Completed:
    """Raise CommandError for a failed result (for commands run with check=False)."""
    if not result.ok:
        raise _failed(result)
    return result
