"""``chaosaa kind operator``: the commands it would run (dry run, nothing touched)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from chaosaa.cli.main import cli
from chaosaa.kindsetup.operator import OperatorInstall, secret_manifest, secret_name
from chaosaa.kindsetup.setup import KindSetup, KindSetupError
from chaosaa.kindsetup.topology import load_topology
from tests.kind.conftest import REPO
from tests.kind.fakes import FakeTools


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
    # a rebuilt image under the same tag rolls the pods: its id is in their annotations
    for part in ("operator", "agent"):
        assert all(f"{part}.podAnnotations.chaosaa\\.io/image-id=" in line for line in helm)
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


class PinnedPrometheus:
    """The demo's Prometheus whose operator scrape is pinned to a 404 until it restarts."""

    def __init__(self, tools: FakeTools, heals: bool) -> None:
        self.tools, self.heals = tools, heals

    def restarted(self) -> bool:
        return any("restart" in c for c in self.tools.commands)

    def __call__(self, url: str, timeout: float) -> tuple[int, bytes] | None:
        assert "scrapePool=chaosaa-operator" in url, url
        up = self.heals and self.restarted()
        error = "" if up else "server returned HTTP status 404 Not Found"
        target = {"health": "up" if up else "down", "lastError": error}
        return 200, json.dumps({"data": {"activeTargets": [target]}}).encode()


@pytest.mark.parametrize("heals", [True, False])
def test_install_ends_only_once_the_demos_prometheus_scrapes_the_operator(
    tmp_path: Path, heals: bool
) -> None:
    topology = load_topology(REPO)
    tools = FakeTools(topology)
    clock = iter(range(0, 10_000))
    setup = KindSetup(
        root=REPO, topology=topology, runner=tools, state_dir=tmp_path,
        http_get=PinnedPrometheus(tools, heals), sleep=lambda _s: None,
        clock=lambda: float(next(clock)),
    )  # fmt: skip
    install = OperatorInstall(setup, build=False)
    if heals:
        install.scraped(topology.hub)
    else:
        with pytest.raises(KindSetupError, match="does not scrape the operator: server returned"):
            install.scraped(topology.hub)
    hub = ("kubectl", "--context", "kind-chaosaa-us", "rollout")
    rollout = [c for c in tools.commands if c[:4] == hub]
    assert [c[4] for c in rollout] == ["restart", "status"]
    assert all("deployment/chaosaa-prometheus" in c and "chaosaa-demo" in c for c in rollout)
