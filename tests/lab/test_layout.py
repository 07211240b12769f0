"""The lab's layout around a system under test: links, configs, scrape targets and status
components come from the System, so another system plugs in without supervisor changes.
Nothing is started here: the layout only binds ports and writes configs."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from chaosaa.lab.paths import StatePaths
from chaosaa.lab.supervisor import DemoSystem, Launcher, ReplicationLink, System
from chaosaa.lab.supervisor.config import Layout
from chaosaa.lab.supervisor.processes import Child
from chaosaa.lab.supervisor.system import Listen

pytestmark = pytest.mark.lab

REGIONS = ["us", "eu", "ap"]


class PrimaryStandby(System):
    """A database per region (us primary, the others streaming from it) and an exporter."""

    def bind(self, regions: Sequence[str], listen: Listen) -> None:
        self.regions = list(regions)
        self.db = {r: listen() for r in regions}
        self.ports = {r: int(s.getsockname()[1]) for r, s in self.db.items()}

    def entry(self, region: str) -> int:
        return self.ports[region]

    def replication_links(self) -> list[ReplicationLink]:
        # Standbys connect to the primary: the link's source is the standby's region.
        return [ReplicationLink(r, "us", self.ports["us"]) for r in self.regions if r != "us"]

    def processes(self, region: str, launcher: Launcher) -> list[Child]:
        upstream = launcher.links.get(f"{region}>us")
        db = launcher.binary(f"db-{region}", ["postgres", f"--primary={upstream}"])
        exporter = launcher.python(f"exporter-{region}", "exporter", {"region": region})
        return [db, exporter]

    def scrape_jobs(self) -> list[dict[str, Any]]:
        static = [
            {"targets": [f"127.0.0.1:{port}"], "labels": {"region": r}}
            for r, port in self.ports.items()
        ]
        return [{"job_name": "db", "honor_labels": True, "static_configs": static}]

    def frozen(self, region: str) -> list[str]:
        return [f"db-{region}", f"exporter-{region}"]


def _layout(tmp_path: Path, system: System) -> Iterator[Layout]:
    layout = Layout(StatePaths(tmp_path), REGIONS, system, "prometheus", {})
    try:
        yield layout
    finally:
        layout.close_inherited()
        layout.admin_sock.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Layout]:
    yield from _layout(tmp_path, DemoSystem())


@pytest.fixture
def pulled(tmp_path: Path) -> Iterator[Layout]:
    yield from _layout(tmp_path, PrimaryStandby())


def test_demo_lays_out_client_links_and_a_full_mesh_of_replication_links(demo: Layout) -> None:
    assert list(demo.link_info) == [
        "router>us", "us>eu", "us>ap", "router>eu", "eu>us", "eu>ap", "router>ap", "ap>us", "ap>eu",
    ]  # fmt: skip
    assert demo.link_info["us>eu"]["upstream"] == demo.node_urls["eu"].removeprefix("http://")
    assert demo.components == ["node-us", "node-eu", "node-ap", "router", "proxy", "prometheus"]
    assert demo.scrape_targets() == len(REGIONS) + 3


def test_another_system_brings_its_own_processes_links_and_scrape_targets(
    pulled: Layout, tmp_path: Path
) -> None:
    assert [n for n, i in pulled.link_info.items() if i["kind"] == "replication"] == [
        "eu>us",
        "ap>us",
    ]
    assert pulled.link_info["ap>us"]["upstream"] == pulled.node_urls["us"].removeprefix("http://")
    assert pulled.region_process == {r: f"db-{r}" for r in REGIONS}
    assert pulled.components[:2] == ["db-us", "exporter-us"]
    assert pulled.components[-3:] == ["router", "proxy", "prometheus"]
    assert pulled.children["db-eu"].argv[-1] == f"--primary={pulled.link_urls['eu>us']}"
    exporter = json.loads((tmp_path / "run" / "exporter-ap.json").read_text())
    assert exporter == {"region": "ap"}
    jobs = [job["job_name"] for job in pulled.prometheus_config["scrape_configs"]]
    assert jobs == ["db", "chaosaa-router", "chaosaa-proxy", "chaosaa-supervisor"]
    assert pulled.scrape_targets() == len(REGIONS) + 3
    proxy = json.loads((tmp_path / "run" / "proxy.json").read_text())
    assert [link["name"] for link in proxy["links"]] == list(pulled.link_info)
