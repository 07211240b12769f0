"""A fault type a target has no handler for is refused before anything is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from chaosaa.cli.main import cli
from chaosaa.errors import InvalidInputError
from chaosaa.spec.loader import load_gameday
from chaosaa.targets import base
from chaosaa.targets.base import Endpoints, Target, TargetOptions
from chaosaa.targets.lab.faults import HANDLERS as LAB_HANDLERS

ROOT = Path(__file__).parent.parent.parent


class OnlyRegionDown(Target):
    """A target that can stop regions and nothing else; it must never be opened here."""

    kind: ClassVar[str] = "kind"
    handlers: ClassVar[dict[str, Any]] = {"regionDown": LAB_HANDLERS["regionDown"]}

    async def open(self) -> Endpoints:
        raise AssertionError("a refused GameDay must not reach the target")

    async def rollback(self) -> list[str]:
        raise AssertionError("not reached")


@pytest.fixture
def narrow_kind_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base._REGISTRY, "kind", OnlyRegionDown)


def test_validate_for_a_target_refuses_what_it_cannot_do(narrow_kind_target: None) -> None:
    blackhole = ROOT / "experiments" / "region-blackhole.yaml"
    result = CliRunner().invoke(cli, ["validate", "--target", "kind", str(blackhole)])
    assert result.exit_code == 2, result.output
    assert f"{blackhole}: spec.faults[0].type: type blackhole is not supported" in result.stderr
    assert "(supported: regionDown)" in result.stderr
    down = ROOT / "experiments" / "region-down.yaml"
    ok = CliRunner().invoke(cli, ["validate", "--target", "kind", str(down)])
    assert ok.exit_code == 0, ok.output


def test_plan_refuses_an_unsupported_fault_naming_what_is_supported(
    narrow_kind_target: None,
) -> None:
    gd = load_gameday(ROOT / "experiments" / "region-blackhole.yaml")
    target = OnlyRegionDown(gd.spec.target, TargetOptions())
    with pytest.raises(InvalidInputError, match=r"not supported by target kind kind"):
        target.check(list(gd.spec.faults))
    with pytest.raises(InvalidInputError, match=r"supported: regionDown"):
        target.plan(gd.spec.faults[0])


def test_every_shipped_target_supports_every_fault_type() -> None:
    from chaosaa.spec.faults import FAULT_TYPES

    for kind in ("lab", "kind", "kubernetes"):
        assert set(base.target_class(kind).handlers) == set(FAULT_TYPES), kind
