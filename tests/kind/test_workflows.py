""".github/workflows: well-formed (actionlint) and running what they must."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaosaa.kindsetup.kindconfig import KIND_VERSION, NODE_IMAGE
from tests.kind.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"


def load(name: str) -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as True
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return result


def runs(workflow: dict[str, Any], job: str) -> list[str]:
    return [s["run"] for s in steps(workflow, job) if "run" in s]


def step_running(workflow: dict[str, Any], job: str, command: str) -> dict[str, Any]:
    found = [s for s in steps(workflow, job) if command in s.get("run", "")]
    assert found, f"no step of {job} runs {command!r}"
    return found[0]


@pytest.mark.parametrize("name", ["ci.yml", "kind-smoke.yml"])
def test_workflow_has_the_required_shape(name: str) -> None:
    wf = load(name)
    assert {"name", "on", "jobs"} <= wf.keys()
    assert wf["permissions"]["contents"] == "read"
    for job_name, job in wf["jobs"].items():
        assert job["runs-on"].startswith("ubuntu-"), job_name
        assert job["timeout-minutes"] <= 90
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


def test_workflows_pass_actionlint(actionlint: Path) -> None:
    proc = subprocess.run(
        [str(actionlint), "-no-color", *map(str, sorted(WORKFLOWS.glob("*.yml")))],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ci_installs_prometheus_and_runs_make_lint_and_make_test() -> None:
    wf = load("ci.yml")
    assert "pull_request" in wf["on"]
    commands = runs(wf, "test")
    assert any("apt-get install" in c and "prometheus" in c for c in commands)
    lint = commands.index(step_running(wf, "test", "make lint")["run"])
    test = commands.index(step_running(wf, "test", "make test")["run"])
    assert lint < test
    assert wf["jobs"]["test"]["env"]["CI"] == "true"


def test_kind_smoke_brings_up_kind_runs_region_down_and_keeps_the_reports() -> None:
    wf = load("kind-smoke.yml")
    assert wf["env"]["KIND_VERSION"] == KIND_VERSION
    kubernetes = re.search(r"kindest/node:(v[\d.]+)@", NODE_IMAGE)
    assert kubernetes and wf["env"]["KUBECTL_VERSION"] == kubernetes.group(1)
    job = "region-down"
    names = [s.get("run", s.get("uses", "")) for s in steps(wf, job)]
    install = step_running(wf, job, "go install")
    assert "sigs.k8s.io/kind@${KIND_VERSION}" in install["run"]
    assert "sha256sum --check" in step_running(wf, job, "kubectl.sha256")["run"]
    up = names.index(step_running(wf, job, "chaosaa kind up")["run"])
    gameday = step_running(wf, job, "chaosaa run experiments/kind/region-down.yaml")
    assert "--report-dir out" in gameday["run"]
    assert "continue-on-error" not in gameday  # an SLO failure (exit 1) fails the job
    run = names.index(gameday["run"])
    assert up < run
    assert (REPO / "experiments" / "kind" / "region-down.yaml").exists()

    by_uses = {s["uses"].split("@")[0]: s for s in steps(wf, job) if "uses" in s}
    upload = next(
        s for s in steps(wf, job)
        if s.get("uses", "").startswith("actions/upload-artifact") and s["with"]["path"] == "out/"
    )  # fmt: skip
    assert upload["if"] == "always()"
    junit = by_uses["mikepenz/action-junit-report"]
    assert junit["if"] == "always()" and junit["with"]["report_paths"] == "out/junit.xml"
    assert wf["permissions"]["checks"] == "write"
    down = step_running(wf, job, "chaosaa kind down")
    assert down["if"] == "always()"
    assert names.index(down["run"]) == len(names) - 1
