"""`chaosaa plan` shows every fault with its concrete actions, touching nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from chaosaa.cli.main import cli
from chaosaa.spec.loader import load_gameday

ROOT = Path(__file__).resolve().parent.parent.parent
EXPERIMENTS = sorted((ROOT / "experiments").glob("**/*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_plan_lists_every_fault_with_actions_and_every_slo(path: Path) -> None:
    gd = load_gameday(path)
    result = CliRunner().invoke(cli, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    for fault in gd.spec.faults:
        assert f"{fault.name} ({fault.type})" in result.output
    for slo in gd.spec.slos:
        assert slo.name in result.output
    doc = json.loads(CliRunner().invoke(cli, ["plan", str(path), "-o", "json"]).output)
    assert [f["name"] for f in doc["faults"]] == sorted(
        (f.name for f in gd.spec.faults), key=lambda n: [f.name for f in gd.spec.faults].index(n)
    )
    assert all(f["actions"] for f in doc["faults"]), "every fault says what it will do"


def test_plan_honours_set_overrides() -> None:
    path = ROOT / "experiments" / "latency.yaml"
    result = CliRunner().invoke(cli, ["plan", str(path), "--set", "spec.faults.0.delay=450ms"])
    assert result.exit_code == 0, result.output
    assert "450ms" in result.output


def test_run_dry_run_injects_nothing(tmp_path: Path) -> None:
    path = ROOT / "experiments" / "region-down.yaml"
    state = tmp_path / "lab"
    result = CliRunner().invoke(
        cli, ["run", str(path), "--dry-run", "--lab-state", str(state)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "dry run: nothing was injected" in result.output
    assert not state.exists()
