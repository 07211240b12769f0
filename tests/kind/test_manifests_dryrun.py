"""Every manifest `chaosaa kind up` would apply passes a server-side dry-run.

Against a real kube-apiserver (tests/k8s control plane), with strict field validation:
unknown or misspelt fields, bad values and schema violations are all rejected by the API
server exactly as they would be in a kind cluster of the same Kubernetes minor.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from chaosaa.kindsetup.manifests import render_region
from chaosaa.kindsetup.topology import NAMESPACE, load_topology
from tests.k8s.controlplane import ControlPlanes
from tests.kind.conftest import REPO
from tests.kind.helpers import fake_node_ips

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180)]


def kubectl(
    plane: ControlPlanes, bin_dir: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl against the fixture's own apiserver only (never a user's context)."""
    context = plane.context("kind")
    plane.assert_owned(context)
    return subprocess.run(
        [str(bin_dir / "kubectl"), "--kubeconfig", str(plane.kubeconfig), "--context", context,
         *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def demo_namespace(dryrun_plane: ControlPlanes, k8s_bin_dir: Path) -> str:
    """The namespace really exists: a dry-run of namespaced objects needs it."""
    topology = load_topology(REPO)
    rendered = render_region(REPO, topology, "us", fake_node_ips(topology))
    ns = next(d for d in rendered.documents if d["kind"] == "Namespace")
    proc = kubectl(dryrun_plane, k8s_bin_dir, "apply", "-f", "-", stdin=yaml.safe_dump(ns))
    assert proc.returncode == 0, proc.stderr
    return NAMESPACE


@pytest.mark.parametrize("region", ["us", "eu", "ap"])
def test_every_rendered_manifest_passes_server_side_dry_run(
    region: str, demo_namespace: str, dryrun_plane: ControlPlanes, k8s_bin_dir: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    topology = load_topology(REPO)
    rendered = render_region(REPO, topology, region, fake_node_ips(topology))
    path = tmp_path / f"{region}.yaml"
    path.write_text(rendered.yaml())
    proc = kubectl(
        dryrun_plane, k8s_bin_dir,
        "apply", "--dry-run=server", "--validate=strict", "-o", "name", "-f", str(path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    applied = proc.stdout.split()
    assert len(applied) == len(rendered.documents), proc.stdout
    assert "deployment.apps/chaosaa-node" in applied


def test_the_dry_run_does_reject_a_broken_manifest(
    demo_namespace: str, dryrun_plane: ControlPlanes, k8s_bin_dir: Path, tmp_path: Path
) -> None:
    """Guards the test above: strict validation is really on."""
    topology = load_topology(REPO)
    rendered = render_region(REPO, topology, "eu", fake_node_ips(topology))
    deployment = next(d for d in rendered.documents if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(deployment))
    proc = kubectl(
        dryrun_plane, k8s_bin_dir, "apply", "--dry-run=server", "--validate=strict", "-f", str(path)
    )
    assert proc.returncode != 0
    assert "readinesProbe" in proc.stderr
