"""`run`, `rollback` and `operator` share one set of target options, with one meaning."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from click.testing import CliRunner

from chaosaa.cli.main import cli
from chaosaa.targets.base import TargetOptions

FLAGS = ["--allow-context", "prod-eu", "--kubeconfig", "/k/config", "--lab-state", "/lab"]
ENV = {"CHAOSAA_ALLOWED_CONTEXTS": "prod-us prod-ap", "KUBECONFIG": None}


def _captured(monkeypatch: pytest.MonkeyPatch, target: str) -> list[Any]:
    seen: list[Any] = []

    def capture(*args: Any, **kwargs: Any) -> int:
        seen.append((args, kwargs))
        return 0

    monkeypatch.setattr(target, capture)
    return seen


def test_run_and_rollback_get_the_flags_as_one_target_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = _captured(monkeypatch, "chaosaa.cli.runner.run_command")
    rollbacks = _captured(monkeypatch, "chaosaa.cli.runner.rollback_command")
    runner = CliRunner()
    path = "experiments/region-down.yaml"
    assert runner.invoke(cli, ["run", path, *FLAGS, "--no-ephemeral-lab"]).exit_code == 0
    assert runner.invoke(cli, ["run", path], env=ENV).exit_code == 0
    assert runner.invoke(cli, ["rollback", "--target", "lab", *FLAGS]).exit_code == 0
    explicit = TargetOptions(
        allowed_contexts=("prod-eu",), kubeconfig="/k/config", state_dir="/lab", ephemeral=False
    )
    assert runs[0][1]["target"] == explicit
    assert runs[1][1]["target"] == TargetOptions(allowed_contexts=("prod-us", "prod-ap"))
    assert rollbacks[0][0][2] == explicit


def test_the_operator_passes_the_same_flags_to_its_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    started = _captured(monkeypatch, "chaosaa.operator.main.run")
    # the command hands logging to kopf: keep this process's as it is
    monkeypatch.setattr("kopf.configure", lambda **_: None)
    monkeypatch.setattr(logging.getLogger(), "handlers", list(logging.getLogger().handlers))
    monkeypatch.setattr(logging.getLogger("kopf.objects"), "level", logging.NOTSET)
    args = ["operator", "-n", "chaos", "--no-lease", *FLAGS, "--ephemeral-lab"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    config = started[0][0][0]
    assert config.targets == TargetOptions(
        allowed_contexts=("prod-eu",), kubeconfig="/k/config", state_dir="/lab", ephemeral=True
    )
    assert config.kubeconfig == "/k/config"  # the operator's own credentials
    result = CliRunner().invoke(cli, ["operator", "-n", "chaos", "--no-lease"], env=ENV)
    assert result.exit_code == 0, result.output
    assert started[1][0][0].targets == TargetOptions(
        allowed_contexts=("prod-us", "prod-ap"), ephemeral=False
    )
