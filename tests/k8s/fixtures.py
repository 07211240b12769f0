"""Fixtures for the ``k8s`` tier: real per-region control planes (see controlplane.py).

Registered for every test package by ``pytest_plugins`` in tests/conftest.py, so a session
starts one set of control planes whichever directories it runs.

Fixtures (all session-scoped unless noted):

- ``k8s_bin_dir``: Path of the binaries built by ``hack/k8s-bin`` (skip locally / fail
  under ``CI`` when they are missing).
- ``control_planes``: the started :class:`ControlPlanes` (regions us, eu, ap by default).
- ``kubeconfig``: Path of a kubeconfig with one context per region, ``chaosaa-test-<region>``;
  ``KUBECONFIG`` points at it for the whole session.
- ``kube_clients``: ``{region: kubernetes.client.ApiClient}`` as cluster admin.
- ``k8s_namespace`` (function scope): a fresh namespace, created in every region and
  deleted afterwards; returns its name.

Environment: ``CHAOSAA_K8S_REGIONS`` (comma list), ``CHAOSAA_K8S_NODES`` (nodes per region,
default 3), ``CHAOSAA_K8S_BIN_DIR`` (use binaries from elsewhere), ``CHAOSAA_K8S_KEEP=1``
(keep the temp dir with logs and data after the session).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.conftest import missing
from tests.k8s.controlplane import (
    DEFAULT_REGIONS,
    ControlPlanes,
    find_bin_dir,
    missing_binaries,
)


@pytest.fixture(scope="session")
def k8s_bin_dir() -> Path:
    bin_dir = find_bin_dir()
    absent = missing_binaries(bin_dir)
    if absent:
        reason = (
            f"Kubernetes binaries missing in {bin_dir}: {', '.join(absent)} "
            "(build them with `make k8s-bin`, i.e. hack/k8s-bin)"
        )
        missing(reason)
    return bin_dir


@pytest.fixture(scope="session")
def control_planes(k8s_bin_dir: Path) -> Iterator[ControlPlanes]:
    regions = tuple(
        r.strip() for r in os.environ.get("CHAOSAA_K8S_REGIONS", "").split(",") if r.strip()
    )
    planes = ControlPlanes(
        k8s_bin_dir,
        regions or DEFAULT_REGIONS,
        nodes_per_region=int(os.environ.get("CHAOSAA_K8S_NODES", "3")),
        keep=os.environ.get("CHAOSAA_K8S_KEEP") == "1",
    )
    planes.start()
    # Anything that loads "the default kubeconfig" during the session gets ours, never
    # ~/.kube/config: a stray config.load_kube_config() cannot reach a real cluster.
    saved = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(planes.kubeconfig)
    try:
        yield planes
    finally:
        if saved is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = saved
        planes.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_planes: ControlPlanes) -> Path:
    return control_planes.kubeconfig


@pytest.fixture(scope="session")
def kube_clients(control_planes: ControlPlanes) -> dict[str, k8s.ApiClient]:
    return {region: control_planes.api_client(region) for region in control_planes.regions}


@pytest.fixture
def k8s_namespace(
    request: pytest.FixtureRequest, kube_clients: dict[str, k8s.ApiClient]
) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:6]}"
    for api in kube_clients.values():
        k8s.CoreV1Api(api).create_namespace(
            k8s.V1Namespace(
                metadata=k8s.V1ObjectMeta(name=name, labels={"chaosaa.io/test": "true"})
            )
        )
    yield name
    for api in kube_clients.values():
        try:
            k8s.CoreV1Api(api).delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
