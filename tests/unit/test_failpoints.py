"""CHAOSAA_FAILPOINTS: parsing, refusal of what is malformed, and what each action does."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from chaosaa import failpoints
from chaosaa.errors import InvalidInputError
from chaosaa.failpoints import Action, FailpointPanic, failpoint, failpoint_sync


@pytest.fixture(autouse=True)
def disarmed() -> Iterator[None]:
    failpoints.configure(None)
    yield
    failpoints.configure(None)


def test_every_action_and_a_count_parse() -> None:
    armed = failpoints.parse(
        " revert.before = panic ; inject.after=sleep(1m30s);renew.before=2*kill;"
        "report.before=term;verify.after=off;"
    )
    assert armed == {
        "revert.before": Action("panic"),
        "inject.after": Action("sleep", 90.0),
        "renew.before": Action("kill", 0.0, 2),
        "report.before": Action("term"),
        "verify.after": Action("off"),
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("revert.befor=panic", "unknown failpoint 'revert.befor'"),
        ("revert.before", "expected NAME=ACTION"),
        ("revert.before=explode", "expected NAME=ACTION"),
        ("revert.before=sleep", "empty duration"),
        ("revert.before=sleep(5)", "not a duration"),
        ("revert.before=panic(now)", "panic takes no argument"),
        ("revert.before=-1*panic", "expected NAME=ACTION"),
    ],
)
def test_a_malformed_value_is_invalid_input_naming_the_entry(text: str, says: str) -> None:
    with pytest.raises(InvalidInputError, match="CHAOSAA_FAILPOINTS") as err:
        failpoints.configure(text)
    assert says in str(err.value)
    assert failpoints.armed() == {}


def test_unset_or_empty_arms_nothing() -> None:
    failpoints.configure_from_env({})
    assert failpoints.armed() == {}
    failpoints.configure_from_env({failpoints.ENV: " ; "})
    assert failpoints.armed() == {}


async def test_a_disarmed_point_does_nothing() -> None:
    failpoints.configure("inject.before=panic")
    await failpoint("inject.after")
    failpoint_sync("report.after")


async def test_panic_raises_an_unexpected_exception_naming_the_point() -> None:
    failpoints.configure("revert.before=panic")
    with pytest.raises(FailpointPanic, match=r"failpoint revert\.before: panic"):
        await failpoint("revert.before")
    assert not isinstance(FailpointPanic("x"), InvalidInputError)


async def test_a_count_acts_on_the_first_passes_only() -> None:
    failpoints.configure("renew.before=2*panic")
    for _ in range(2):
        with pytest.raises(FailpointPanic):
            await failpoint("renew.before")
    await failpoint("renew.before")  # third pass: nothing


async def test_sleep_lets_other_tasks_run() -> None:
    failpoints.configure("inject.after=sleep(200ms)")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    t0 = time.monotonic()
    await failpoint("inject.after")
    elapsed = time.monotonic() - t0
    task.cancel()
    assert elapsed >= 0.2
    assert ticks >= 2, "the sleep blocked the event loop"


@pytest.mark.parametrize(("action", "code"), [("kill", -9), ("term", -15)])
def test_kill_and_term_signal_the_process_itself(action: str, code: int) -> None:
    script = (
        "from chaosaa import failpoints\n"
        f"failpoints.configure('report.before={action}')\n"
        "failpoints.failpoint_sync('report.before')\n"
        "import time; time.sleep(5)\n"
        "print('survived')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == code
    assert "survived" not in proc.stdout
    assert f"failpoint report.before: {action}" in proc.stderr
