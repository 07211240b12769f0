"""One round trip for many rule commands: the checked shell script, run by a real ``sh``.

The script must judge each command exactly as ``execute``/``execute_all`` do one by one
(tolerated errors, guards, the first real failure explained), since over ``docker exec``
it replaces them.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from chaosaa.rules.execute import RuleError, ScriptOutcome, execute_script, run_process
from chaosaa.rules.generate import (
    Command,
)


async def local(argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
    return await run_process(argv, stdin, 10.0)


def sh(text: str, **kw: object) -> Command:
    return Command(("sh", "-c", text), **kw)  # type: ignore[arg-type]


def run(commands: Sequence[Command], **kw: object) -> ScriptOutcome:
    return asyncio.run(execute_script(commands, local, **kw))  # type: ignore[arg-type]


def test_stops_at_the_first_real_failure_and_explains_it(tmp_path: Path) -> None:
    marks = tmp_path / "ran"
    commands = [
        sh(f"echo one >> {marks}"),
        sh("echo 'Error: No such file or directory' >&2; exit 1", tolerate=("No such file",)),
        sh("exit 1", guard=("false",)),  # guard fails: not run
        sh(f"echo three >> {marks}", guard=("echo", "qdisc htb"), when="htb", unless="noqueue"),
        sh("echo 'Error: boom' >&2; exit 3", explain="the third rule"),
        sh(f"echo never >> {marks}"),
    ]
    with pytest.raises(RuleError, match=r"^the third rule: Error: boom$") as err:
        run(commands)
    assert err.value.command is commands[4]
    assert marks.read_text() == "one\nthree\n"


def test_keep_going_runs_everything_and_returns_each_failure(tmp_path: Path) -> None:
    marks = tmp_path / "ran"
    commands = [
        sh("echo 'first' >&2; exit 1", explain="a"),
        sh(f"echo two >> {marks}"),
        sh("echo 'second' >&2; exit 2", explain="b"),
    ]
    outcome = run(commands, keep_going=True)
    assert outcome.failures == ["a: first", "b: second"]
    assert marks.read_text() == "two\n"


def test_stdin_reaches_each_command_unchanged(tmp_path: Path) -> None:
    text = "add rule inet chaosaa c_e ip daddr { 10.0.0.0/8 } drop\n'quotes' \"and\" $VARS `x`\n"
    out = tmp_path / "stdin"
    run([Command(("sh", "-c", f"cat > {out}"), stdin=text), Command(("cat",), stdin="x\n")])
    assert out.read_text() == text


def test_a_transport_failure_is_a_rule_error() -> None:
    async def broken(argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
        return 1, "", "Error response from daemon: container is paused"

    with pytest.raises(RuleError, match="container is paused"):
        asyncio.run(execute_script([sh("true")], broken))


def test_the_read_back_comes_in_the_same_round_trip() -> None:
    outcome = run([sh("true")], readback_device="lo")
    assert outcome.failures == []
    assert outcome.tc is not None
    if shutil.which("tc"):
        assert "qdisc" in outcome.tc
    assert outcome.nft is not None and "## chaosaa" not in outcome.nft + outcome.tc
