"""deploy/Dockerfile, checked statically: no Docker engine is needed to read it.

The instructions are parsed (line continuations, comments, parser directives), and
every thing the image relies on is checked against the repository: the files it copies
exist, its entrypoint is an importable module whose components are the ones the
manifests start, and it runs as the user the manifests expect.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
from dataclasses import dataclass

import pytest

from chaosaa.kindsetup import entry
from chaosaa.kindsetup.manifests import render_region
from chaosaa.kindsetup.topology import APP_PORT, load_topology
from tests.kind.conftest import REPO
from tests.kind.helpers import fake_node_ips

DOCKERFILE = REPO / "deploy" / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    line: int

    def exec_form(self) -> list[str]:
        parsed = json.loads(self.value)
        assert isinstance(parsed, list), f"line {self.line}: {self.keyword} must be exec form"
        return [str(p) for p in parsed]


def parse_dockerfile(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue  # comments and parser directives (# syntax=...)
        if buf and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        keyword, _, value = " ".join(p for p in buf if p).partition(" ")
        out.append(Instruction(keyword.upper(), value.strip(), start))
        buf = []
    assert not buf, "the Dockerfile ends inside a line continuation"
    return out


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, (keyword, found)
    return found[0]


def test_known_instructions_and_a_python_311_slim_base(instructions: list[Instruction]) -> None:
    known = {"ARG", "FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "ENTRYPOINT", "CMD"}
    assert {i.keyword for i in instructions} <= known
    # the base is a build argument whose default is what users pull
    assert [(i.keyword, i.value) for i in instructions[:2]] == [
        ("ARG", "BASE_IMAGE=python:3.11-slim"),
        ("FROM", "${BASE_IMAGE}"),
    ]
    assert only(instructions, "FROM").line > only(instructions, "ARG").line
    assert DOCKERFILE.read_text().startswith("# syntax=docker/dockerfile:1")


def test_the_files_it_copies_exist_and_survive_the_dockerignore(
    instructions: list[Instruction],
) -> None:
    ignore = (REPO / "deploy" / "Dockerfile.dockerignore").read_text().split()
    for copy in (i for i in instructions if i.keyword == "COPY"):
        *sources, _dest = shlex.split(copy.value)
        for source in sources:
            assert (REPO / source).exists(), f"line {copy.line}: {source} is not in the repo"
            assert f"!{source}" in ignore or f"!{source}/" in ignore, source
    # the package needs its readme to build (pyproject.toml: readme = "README.md")
    copied = {s for i in instructions if i.keyword == "COPY" for s in shlex.split(i.value)[:-1]}
    assert {"pyproject.toml", "README.md", "chaosaa"} <= copied
    assert any(i.keyword == "RUN" and "pip install ." in i.value for i in instructions)


def test_the_entrypoint_is_an_importable_module_with_the_components_pods_start(
    instructions: list[Instruction],
) -> None:
    entrypoint = only(instructions, "ENTRYPOINT").exec_form()
    assert entrypoint[:2] == ["python", "-m"]
    module = entrypoint[2]
    assert module == entry.__name__
    assert importlib.util.find_spec(module) is not None
    for lab_module, _keys in entry.COMPONENTS.values():
        assert importlib.util.find_spec(lab_module) is not None, lab_module
    topology = load_topology(REPO)
    rendered = render_region(REPO, topology, "us", fake_node_ips(topology))
    started = {
        d["spec"]["template"]["spec"]["containers"][0]["args"][0]
        for d in rendered.documents
        if d["kind"] == "Deployment" and d["metadata"]["name"] != "chaosaa-prometheus"
    }
    assert started == set(entry.COMPONENTS)
    assert only(instructions, "CMD").exec_form() == ["--help"]


def test_it_runs_as_the_non_root_user_the_manifests_expect(instructions: list[Instruction]) -> None:
    user = only(instructions, "USER").value
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0
    topology = load_topology(REPO)
    rendered = render_region(REPO, topology, "us", fake_node_ips(topology))
    for d in rendered.documents:
        if d["kind"] == "Deployment" and d["metadata"]["name"] != "chaosaa-prometheus":
            ctx = d["spec"]["template"]["spec"]["securityContext"]
            assert (ctx["runAsUser"], ctx["runAsGroup"]) == (int(uid), int(gid))
    assert only(instructions, "EXPOSE").value == str(APP_PORT)


def test_the_parser_handles_continuations_and_comments() -> None:
    parsed = parse_dockerfile("# syntax=docker/dockerfile:1\nFROM a\nRUN x \\\n  # c\n  && y\n")
    assert [(i.keyword, i.value, i.line) for i in parsed] == [
        ("FROM", "a", 2),
        ("RUN", "x && y", 3),
    ]


def test_the_help_of_the_entrypoint_works_without_a_cluster() -> None:
    with pytest.raises(SystemExit) as info:
        entry.prepare(["--help"])
    assert info.value.code == 0
