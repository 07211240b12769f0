"""Hostile and careless GameDay files: `validate` exits 0 or 2, never a traceback, in
bounded time and memory (issue: a chaos tool that crashes mid-GameDay leaves a region
blackholed)."""

from __future__ import annotations

import random
import time
import tracemalloc
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaosaa.cli.main import cli

ROOT = Path(__file__).parent.parent.parent
VALID = [
    ROOT / "tests" / "specs" / "valid" / "minimal.yaml",
    *sorted(ROOT.glob("experiments/*.yaml")),
]
#: CPU seconds per example (not wall time: the machine may be busy); a GameDay validates
#: in milliseconds, an unbounded alias expansion would take minutes
TIME_LIMIT = 10.0
MEMORY_LIMIT = 64 << 20

HOSTILE_SCALARS = [
    "1e400",
    "-1e400",
    ".nan",
    ".inf",
    "1" + "0" * 400,
    "1" + "0" * 400 + "s",
    "99999999999999999999h",
    "'>= 1e400'",
    "0.0000000000000000001ms",
    "-0",
    "''",
    "~",
    "[]",
    "{}",
    "[[[[[[[[[[]]]]]]]]]]",
    "{[us, eu]: {}}",
    "!!binary aGVsbG8=",
    "2026-12-05",
    "yes",
    "0x7fffffffffffffffffff",
    "x" * 2000,
]


def validate_text(tmp: Path, text: str) -> tuple[int, str, float, int]:
    path = tmp / "hostile.yaml"
    path.write_text(text)
    tracemalloc.start()
    started = time.process_time()
    try:
        result = CliRunner().invoke(cli, ["validate", str(path)])
        elapsed = time.process_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result.exit_code, result.output, elapsed, peak


def check(tmp: Path, text: str) -> None:
    code, output, elapsed, peak = validate_text(tmp, text)
    assert code in (0, 2), output
    assert "Traceback" not in output, output
    assert elapsed < TIME_LIMIT, f"validate took {elapsed:.1f} CPU seconds"
    assert peak < MEMORY_LIMIT, f"validate used {peak >> 20} MiB"


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def mutate(doc: Any, seed: int, scalar: str) -> Any:
    """Replace one value (or key) of a valid GameDay with a hostile one."""
    rng = random.Random(seed)
    path = rng.choice(_paths(doc)[1:])
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    value = yaml.safe_load(scalar) if not scalar.startswith("!!") else scalar
    if isinstance(parent, dict) and rng.random() < 0.2:
        parent[str(scalar)[:30]] = parent.pop(path[-1])  # a hostile key
    else:
        parent[path[-1]] = value
    return doc


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    which=st.integers(min_value=0, max_value=len(VALID) - 1),
    seed=st.integers(min_value=0, max_value=10**6),
    scalar=st.sampled_from(HOSTILE_SCALARS) | st.text(max_size=30),
)
def test_mutated_gamedays_are_refused_or_accepted_never_crash(
    tmp_path: Path, which: int, seed: int, scalar: str
) -> None:
    doc = yaml.safe_load(VALID[which].read_text())
    try:
        text = yaml.safe_dump(mutate(doc, seed, scalar))
    except yaml.YAMLError:
        return
    check(tmp_path, text)


#: YAML text with the features a hostile file uses: anchors, aliases, deep flow
#: nesting, complex keys, tags and huge numbers
_atoms = st.sampled_from([*HOSTILE_SCALARS, "1", "x", "10s", "us", "*a", "*b", "&a 1", "&b [1]"])
_flow = st.recursive(
    _atoms,
    lambda inner: (
        st.lists(inner, max_size=6).map(lambda xs: "[" + ", ".join(xs) + "]")
        | st.lists(st.tuples(inner, inner), max_size=4).map(
            lambda kv: "{" + ", ".join(f"? {k} : {v}" for k, v in kv) + "}"
        )
        | inner.map(lambda x: f"&a {x}")
        | inner.map(lambda x: f"&b [{x}, {x}, {x}, *b, *b, *b, *b, *b]")
    ),
    max_leaves=40,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(field=st.sampled_from(["spec", "metadata", "spec.faults", "spec.target"]), body=_flow)
def test_hostile_yaml_is_refused_or_accepted_never_crash(
    tmp_path: Path, field: str, body: str
) -> None:
    head = "apiVersion: chaosaa.io/v1alpha1\nkind: GameDay\nmetadata: {name: x}\n"
    if field == "spec":
        text = head + f"spec: {body}\n"
    elif field == "metadata":
        text = (
            "apiVersion: chaosaa.io/v1alpha1\nkind: GameDay\n" + f"metadata: {body}\nspec: {{}}\n"
        )
    else:
        key = field.split(".")[1]
        text = head + f"spec:\n  target: {{kind: lab, regions: {{us: {{}}}}}}\n  {key}: {body}\n"
    check(tmp_path, text)


def test_every_hostile_file_of_the_issue_is_refused_quickly(tmp_path: Path) -> None:
    for name in ["alias-bomb", "deep-nesting", "key-is-a-list", "duration-overflow"]:
        text = (ROOT / "tests" / "specs" / "invalid" / f"{name}.yaml").read_text()
        code, output, elapsed, peak = validate_text(tmp_path, text)
        assert code == 2, output
        assert elapsed < 2.0 and peak < 16 << 20, (name, elapsed, peak)


def test_a_multi_file_validate_checks_every_file_after_a_hostile_one(tmp_path: Path) -> None:
    bad = ROOT / "tests" / "specs" / "invalid" / "key-is-a-list.yaml"
    good = ROOT / "tests" / "specs" / "valid" / "minimal.yaml"
    result = CliRunner().invoke(cli, ["validate", str(bad), str(good), str(bad)])
    assert result.exit_code == 2
    assert f"{good}: valid" in result.stdout
    assert result.stderr.count("a mapping key is a list") == 2


def test_oversized_files_are_refused_before_they_are_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * (300 << 10))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2 and "at most 256 KiB" in result.stderr
