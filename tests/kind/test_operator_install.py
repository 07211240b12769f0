"""``chaosaa kind operator``: the commands it would run (dry run, nothing touched)."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from chaosaa.cli.main import cli
from chaosaa.kindsetup.operator import secret_manifest, secret_name
from tests.kind.conftest import REPO


def test_dry_run_installs_the_operator_in_the_hub_and_agents_everywhere(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = CliRunner().invoke(
        cli, ["kind", "operator", "--dry-run", "--root", str(REPO), "--state-dir", str(tmp_path)]
    )
    assert out.exit_code == 0, out.output
    helm = [line for line in out.output.splitlines() if line.startswith("$ helm ")]
    assert len(helm) == 3
    assert "kind-chaosaa-us" in helm[0] and "operator.enabled=true" in helm[0]
    assert "chaosaa-kubeconfig-us,chaosaa-kubeconfig-eu,chaosaa-kubeconfig-ap" in helm[0]
    for line in helm[1:]:
        assert "operator.enabled=false" in line and "agent.enabled=true" in line
    assert all("image.pullPolicy=Never" in line for line in helm)
    assert "$ kind get kubeconfig --internal --name chaosaa-eu" in out.output
    assert "$ kind get kubeconfig --internal --name chaosaa-ap" in out.output
    assert not list(tmp_path.rglob("*")), "a dry run writes nothing"


def test_the_secret_holds_the_kubeconfig_under_the_key_the_gamedays_name() -> None:
    doc = yaml.safe_load(secret_manifest("eu", "apiVersion: v1\nkind: Config\n"))
    assert doc["metadata"] == {
        "name": secret_name("eu"),
        "namespace": "chaosaa-system",
        "labels": {"app.kubernetes.io/part-of": "chaosaa"},
    }
    assert doc["stringData"]["kubeconfig"].startswith("apiVersion: v1")
