"""Fixtures of the kind tests: Go-built checkers and a real kube-apiserver for dry-runs.

The apiserver comes from tests/k8s (``k8s_bin_dir`` fixture, ``ControlPlanes``): one
region is enough for server-side dry-runs, so this starts a single small control plane
rather than the three-region set the k8s tier uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.k8s.controlplane import ControlPlanes
from tests.kind import gotools

REPO = Path(__file__).resolve().parents[2]
_HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def kindcheck() -> Path:
    try:
        return gotools.build_kindcheck()
    except gotools.GoUnavailable as exc:
        missing(str(exc))
        raise


@pytest.fixture(scope="session")
def actionlint() -> Path:
    try:
        return gotools.build_actionlint()
    except gotools.GoUnavailable as exc:
        missing(str(exc))
        raise


@pytest.fixture(scope="session")
def kind_module() -> Path:
    try:
        return gotools.kind_module_dir()
    except gotools.GoUnavailable as exc:
        missing(str(exc))
        raise


@pytest.fixture(scope="session")
def dryrun_plane(k8s_bin_dir: Path) -> Iterator[ControlPlanes]:
    planes = ControlPlanes(k8s_bin_dir, ("kind",), nodes_per_region=1)
    planes.start()
    try:
        yield planes
    finally:
        planes.stop()
