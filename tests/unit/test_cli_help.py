"""Every command's --help teaches: a description and at least one example."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from chaosaa.cli.main import cli


def all_commands() -> list[tuple[str, ...]]:
    ctx = click.Context(cli)
    paths: list[tuple[str, ...]] = []

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            paths.append((*prefix, name))
            if isinstance(command, click.Group):
                walk(command, (*prefix, name))

    walk(cli, ())
    return paths


COMMANDS = all_commands()


def test_the_core_commands_are_there() -> None:
    names = {c[0] for c in COMMANDS}
    assert {"validate", "plan", "run", "rollback", "report", "lab"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Usage: " in text
    if not isinstance(cli.get_command(click.Context(cli), path[0]), click.Group) or len(path) > 1:
        assert "example" in text.lower(), f"`chaosaa {' '.join(path)} --help` shows no example"
