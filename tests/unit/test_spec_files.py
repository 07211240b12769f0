"""Malformed GameDay files: each exits 2 naming the field; none touches anything."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaosaa.cli.main import cli
from chaosaa.errors import SpecError
from chaosaa.spec.loader import load_gameday, load_gameday_text

SPECS = Path(__file__).parent.parent / "specs"
INVALID = sorted((SPECS / "invalid").glob("*.yaml"))
EXPERIMENTS = sorted((Path(__file__).parent.parent.parent / "experiments").glob("**/*.yaml"))


def expected_error(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace")
    return first.removeprefix("# expect-error: ") if first.startswith("# expect-error:") else ""


def test_there_are_at_least_30_malformed_files() -> None:
    assert len(INVALID) >= 30


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_validate_rejects_malformed_file_naming_file_and_field(path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.stderr
    assert expected_error(path) in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("path", [SPECS / "valid" / "minimal.yaml", *EXPERIMENTS], ids=str)
def test_shipped_and_example_gamedays_are_valid(path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output


def test_error_carries_the_yaml_line() -> None:
    with pytest.raises(SpecError) as info:
        load_gameday(SPECS / "invalid" / "negative-duration.yaml")
    (problem,) = info.value.problems
    assert problem.startswith(f"{SPECS / 'invalid' / 'negative-duration.yaml'}:21: ")
    assert "spec.faults[0].duration" in problem


def test_every_problem_is_reported_not_only_the_first() -> None:
    text = (SPECS / "valid" / "minimal.yaml").read_text()
    text = text.replace("rate: 50", "rate: -1").replace("duration: 60s", "duration: soon")
    with pytest.raises(SpecError) as info:
        load_gameday_text(text, "two.yaml")
    fields = " ".join(info.value.problems)
    assert "spec.traffic.rate" in fields and "spec.faults[0].duration" in fields


def test_set_overrides_are_validated_too() -> None:
    text = (SPECS / "valid" / "minimal.yaml").read_text()
    gd = load_gameday_text(text, "x.yaml", ["spec.traffic.rate=120", "spec.faults.0.duration=5s"])
    assert gd.spec.traffic.rate == 120
    assert gd.spec.faults[0].duration == 5
    with pytest.raises(SpecError, match=r"spec\.traffic\.rate"):
        load_gameday_text(text, "x.yaml", ["spec.traffic.rate=-3"])
    with pytest.raises(SpecError, match="no such item"):
        load_gameday_text(text, "x.yaml", ["spec.faults.7.duration=5s"])


def test_run_of_an_invalid_file_touches_nothing(tmp_path: Path) -> None:
    """A real `chaosaa run` subprocess: exit 2, no lab started, no report written."""
    state = tmp_path / "lab"
    reports = tmp_path / "reports"
    for path in INVALID[:5]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "chaosaa.cli.main",
                "run",
                str(path),
                "--lab-state",
                str(state),
                "--report-dir",
                str(reports),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CHAOSAA_LAB_STATE": str(state)},
        )
        assert proc.returncode == 2, proc.stderr
        assert str(path) in proc.stderr
        assert not state.exists(), "a lab was started for an invalid GameDay"
        assert not reports.exists(), "an invalid GameDay produced a report"


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=yaml_values)
def test_arbitrary_yaml_never_raises_anything_but_spec_error(doc: object) -> None:
    text = yaml.safe_dump(doc)
    try:
        load_gameday_text(text, "fuzz.yaml")
    except SpecError as exc:
        assert all(p.startswith("fuzz.yaml") for p in exc.problems)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_arbitrary_text_never_raises_anything_but_spec_error(text: str) -> None:
    with contextlib.suppress(SpecError):
        load_gameday_text(text, "fuzz.yaml")


@settings(max_examples=200, deadline=None)
@given(
    spec=st.dictionaries(
        st.sampled_from(["target", "traffic", "faults", "slos", "steadyState", "abort", "bogus"]),
        yaml_values,
        max_size=4,
    )
)
def test_arbitrary_spec_bodies_never_crash(spec: dict[str, object]) -> None:
    doc = {
        "apiVersion": "chaosaa.io/v1alpha1",
        "kind": "GameDay",
        "metadata": {"name": "x"},
        "spec": spec,
    }
    with contextlib.suppress(SpecError):
        load_gameday_text(yaml.safe_dump(doc), "fuzz.yaml")


def test_gameday_reference_doc_is_generated_from_the_models() -> None:
    from chaosaa.spec.reference import render_reference

    doc = Path(__file__).parent.parent.parent / "docs" / "gameday-reference.md"
    assert doc.read_text() == render_reference(), (
        "docs/gameday-reference.md is stale: "
        "python -m chaosaa.spec.reference > docs/gameday-reference.md"
    )
