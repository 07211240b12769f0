"""Fixtures of the kind tests: Go-built checkers, a real kube-apiserver for dry-runs, and
(the kind tier) real kind clusters.

The apiserver comes from tests/k8s (``k8s_bin_dir`` fixture, ``ControlPlanes``): one
region is enough for server-side dry-runs, so this starts a single small control plane
rather than the three-region set the k8s tier uses.

The kind clusters come up once per session (``chaosaa kind up``, 3-7 minutes here) and go
with ``chaosaa kind down`` at its end; the tier's last test checks what that leaves.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.k8s.controlplane import ControlPlanes
from tests.kind import gotools
from tests.kind.clusters import CLUSTERS, ENV_REUSE, Kind, kind_environment, missing_tools

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


@pytest.fixture(scope="session")
def kind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kind]:
    """chaosaa-us/eu/ap, created for this session (never clusters it did not create)."""
    env = kind_environment()
    reason = missing_tools(env)
    if reason is not None:
        missing(reason)
    clusters = Kind(env, tmp_path_factory.mktemp("kind-state"))
    existing = [c for c in CLUSTERS if clusters.nodes(c)]
    if existing and env.get(ENV_REUSE) != "1":
        pytest.fail(
            f"kind cluster(s) {', '.join(existing)} exist already; the kind tier only "
            f"touches clusters it creates: `chaosaa kind down` first ({ENV_REUSE}=1 reuses "
            "them, for development)",
            pytrace=False,
        )
    if existing:
        yield clusters
        return
    up = clusters.up()
    try:
        assert up.code == 0, f"chaosaa kind up: exit {up.code}\n{up.stderr[-4000:]}"
        yield clusters
    finally:
        clusters.down()
