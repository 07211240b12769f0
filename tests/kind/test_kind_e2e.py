"""The kind path for real: `kind up`, the region-down GameDay, `kind down`.

Opt-in (`pytest --kind`): needs a Docker engine, kind and kubectl, ~5-10 minutes, and
creates the clusters chaosaa-us/eu/ap. On our machines (no registry) run it with the
images of hack/kind-images: `eval "$(hack/kind-images --env)"; CHAOSAA_KIND_WORKERS=0`
(docs/kind.md). The GitHub workflow kind-smoke.yml runs the same sequence.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kind.conftest import REPO

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]


def chaosaa(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaosaa.cli.main", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def kind_clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("kind-state")
    up = chaosaa("kind", "up", "--state-dir", str(state))
    try:
        assert up.returncode == 0, up.stderr
        yield state
    finally:
        chaosaa("kind", "down", "--state-dir", str(state), timeout=600)


def test_region_down_gameday_passes_on_kind(kind_clusters: Path, tmp_path: Path) -> None:
    target = kind_clusters / "kind-target.yaml"
    assert chaosaa("validate", str(target)).returncode == 0
    proc = chaosaa(
        "run", "experiments/kind/region-down.yaml", "--report-dir", str(tmp_path), "--plain"
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert proc.returncode == 0, (report.get("reason"), proc.stderr[-2000:])
    assert report["dataIntegrity"]["lost"] == 0
