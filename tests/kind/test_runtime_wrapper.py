"""hack/chaosaa-runc: runc minus the capabilities this kernel cannot grant.

Run for real with a stand-in for runc that records its arguments: the wrapper must strip
the dropped capabilities from the bundle's config.json (create/run) and from the process
spec (exec --process), leave every other byte of meaning alone, and pass the arguments
through untouched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.kind.conftest import REPO

WRAPPER = REPO / "hack" / "chaosaa-runc"
CAPS = ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"]

pytestmark = pytest.mark.skipif(shutil.which("jq") is None, reason="the wrapper needs jq")


def run_wrapper(tmp_path: Path, *args: str) -> list[str]:
    fake = tmp_path / "runc"
    log = tmp_path / "argv"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {log}\n')
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "CHAOSAA_REAL_RUNC": str(fake)}
    subprocess.run([str(WRAPPER), *args], check=True, env=env, timeout=30)
    return log.read_text().splitlines()


def spec() -> dict[str, Any]:
    sets = ("bounding", "effective", "permitted")
    return {
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "capabilities": {k: list(CAPS) for k in sets}},
        "linux": {"resources": {"memory": {"limit": 536870912}}},
    }


def test_create_strips_the_capability_from_every_set_of_the_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(spec()))
    argv = ["--root", "/run/runc", "--log", "/x/log.json", "create", "--bundle", str(bundle), "id"]
    assert run_wrapper(tmp_path, *argv) == argv
    got = json.loads((bundle / "config.json").read_text())
    expected = spec()
    for caps in expected["process"]["capabilities"].values():
        caps.remove("CAP_SYS_RESOURCE")
    assert got == expected


def test_exec_strips_the_capability_from_the_process_spec(tmp_path: Path) -> None:
    process = tmp_path / "process.json"
    process.write_text(json.dumps(spec()["process"]))
    run_wrapper(tmp_path, "exec", "--process", str(process), "--detach", "id")
    caps = json.loads(process.read_text())["capabilities"]
    assert all("CAP_SYS_RESOURCE" not in c and "CAP_CHOWN" in c for c in caps.values())


def test_other_commands_and_specs_without_the_capability_are_untouched(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    text = '{"process": {"args": ["true"]}}'
    (bundle / "config.json").write_text(text)
    run_wrapper(tmp_path, "create", "-b", str(bundle), "id")
    assert (bundle / "config.json").read_text() == text
    assert run_wrapper(tmp_path, "state", "id") == ["state", "id"]
