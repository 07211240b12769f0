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
from dataclasses import dataclass, field

from chaosaa.errors import FaultError
from chaosaa.rules.generate import (
    Command,
)
from chaosaa.rules.shell import (
    FAILED_MARK,
    READBACK_MARK,
    render_checked_sh,
)

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


@dataclass(frozen=True)
class ScriptOutcome:
    """What :func:`execute_script` found: the failures, and the read-back if asked for."""

    failures: list[str] = field(default_factory=list)
    #: the ``readback`` listings taken after the commands, in the same round trip
    nft: str | None = None
    tc: str | None = None


async def execute_script(
    commands: Sequence[Command],
    run: Transport,
    *,
    keep_going: bool = False,
    readback_device: str | None = None,
) -> ScriptOutcome:
    """Run ``commands`` as one shell script (``sh -s``): one round trip to the node.

    Each command is judged as :func:`execute` judges it. Without ``keep_going`` the first
    failure stops the script and raises :class:`RuleError`, as :func:`execute` does; with
    it every command runs and the failures are returned, as :func:`execute_all` does.
    """
    script = render_checked_sh(commands, keep_going=keep_going, readback_device=readback_device)
    code, out, err = await run(("sh", "-s"), script)
    body, _, readback = out.partition(READBACK_MARK)
    failures: list[tuple[Command, str, str]] = []
    for block in body.split(FAILED_MARK)[1:]:
        head, _, output = block.partition("\n")
        index, _, rc = head.partition(" ")
        cmd = commands[int(index)]
        failures.append((cmd, explain_failure(cmd, int(rc or 1), output), output))
    if code != 0 and not failures:  # the transport itself failed (docker exec, a timeout)
        shell = Command(("sh", "-s"), stdin=script, explain="running the rules on the node")
        failures.append((shell, explain_failure(shell, code, err or out), err))
    if failures and not keep_going:
        cmd, message, output = failures[0]
        raise RuleError(message, cmd, output)
    nft = tc = None
    if readback_device is not None and readback:
        _, _, listings = readback.partition("\n")
        nft, _, tc_part = listings.partition(READBACK_MARK)
        tc = tc_part.partition("\n")[2]
    return ScriptOutcome([m for _, m, _ in failures], nft, tc)
