"""Run generated commands through a transport, judging each outcome the same way.

A transport is an async callable ``run(argv, stdin) -> (returncode, stdout, stderr)``:
``docker exec -i NODE ...`` for kind, ``ip netns exec NS ...`` in tests, plain exec in the
agent. It only ever runs what :mod:`chaosaa.rules.generate` produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
from collections.abc import Awaitable, Callable, Sequence

from chaosaa.errors import FaultError
from chaosaa.rules.generate import Command

Transport = Callable[[Sequence[str], str | None], Awaitable[tuple[int, str, str]]]


async def run_process(
    argv: Sequence[str], stdin: str | None, time_limit: float
) -> tuple[int, str, str]:
    """Run ``argv`` as a local subprocess to completion: the transport's result triple.

    A missing program is exit code 127 and a run longer than ``time_limit`` seconds is killed
    and reported as 124, the shell's conventions, so callers judge every outcome alike.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: not found on PATH"
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), time_limit
        )
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return 124, "", f"timed out after {time_limit:g}s: {shlex.join(argv)}"
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


class RuleError(FaultError):
    """A node rule command failed."""

    def __init__(self, message: str, command: Command, stderr: str = "") -> None:
        super().__init__(message)
        self.command = command
        self.stderr = stderr

    @property
    def missing_kernel_feature(self) -> bool:
        return "kernel lacks" in str(self)


def explain_failure(cmd: Command, code: int, stderr: str) -> str:
    detail = " ".join(stderr.split())[:400] or f"exit code {code}"
    what = cmd.explain or cmd.describe()
    if "qdisc kind is unknown" in stderr:
        kind = next(
            (k for k in ("netem", "tbf", "htb", "pfifo") if k in (cmd.stdin or "")),
            "qdisc",
        )
        if kind == "netem":
            return f"{what}: the kernel lacks the netem qdisc (CONFIG_NET_SCH_NETEM): {detail}"
        return f"{what}: the kernel lacks the {kind} qdisc: {detail}"
    if cmd.argv and cmd.argv[0] in ("nft", "tc") and code == 127:
        return f"{what}: {cmd.argv[0]} is not installed on the node: {detail}"
    return f"{what}: {detail}"


async def execute(commands: Sequence[Command], run: Transport) -> None:
    """Run commands in order; raise RuleError at the first real failure."""
    for cmd in commands:
        if cmd.guard is not None:
            code, out, _ = await run(cmd.guard, None)
            if code != 0:
                continue
            if cmd.when is not None and not re.search(cmd.when, out, re.M):
                continue
            if cmd.unless is not None and re.search(cmd.unless, out, re.M):
                continue
        code, out, err = await run(cmd.argv, cmd.stdin)
        if code == 0:
            continue
        text = f"{err}\n{out}"
        if cmd.tolerate and any(t in text for t in cmd.tolerate):
            continue
        raise RuleError(explain_failure(cmd, code, err or out), cmd, err)


async def execute_all(commands: Sequence[Command], run: Transport) -> list[str]:
    """Best effort (reverts): run every command, return the failures instead of raising."""
    failures = []
    for cmd in commands:
        try:
            await execute([cmd], run)
        except RuleError as exc:
            failures.append(str(exc))
    return failures
