"""The demo image's entrypoint, run for real on 127.0.0.1 with the manifests' own args.

What a pod runs is `python -m chaosaa.kindsetup.entry <args from the Deployment>` with the
config from the ConfigMap; here the same args and configs run as local processes (only
the addresses are moved to free loopback ports), and the demo must work: nodes
replicate to each other and the router routes by home region.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaosaa.kindsetup import entry
from chaosaa.kindsetup.manifests import render_region
from chaosaa.kindsetup.topology import Topology, load_topology
from tests.kind.conftest import REPO
from tests.kind.helpers import fake_node_ips

pytestmark = pytest.mark.timeout(60)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pod_spec(topology: Topology, region: str, name: str) -> tuple[list[str], dict[str, Any]]:
    """(container args, config JSON) of a Deployment, as rendered for the cluster."""
    rendered = render_region(REPO, topology, region, fake_node_ips(topology))
    docs = {(d["kind"], d["metadata"]["name"]): d for d in rendered.documents}
    (container,) = docs[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
    ((_key, text),) = docs[("ConfigMap", name)]["data"].items()
    return list(container["args"]), json.loads(text)


def http(
    method: str, url: str, body: bytes | None = None, **headers: str
) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _NO_PROXY.open(req, timeout=2) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if http("GET", f"{url}/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never became healthy")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The three nodes and the router, each started exactly as its pod starts it."""
    topology = load_topology(REPO)
    ports = {r: free_port() for r in [*topology.names, "router"]}
    local = {r: f"http://127.0.0.1:{p}" for r, p in ports.items()}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for region in topology.names:
            args, config = pod_spec(topology, region, "chaosaa-node")
            config["db"] = str(tmp_path / region / "data.sqlite")
            config["peers"] = {peer: local[peer] for peer in config["peers"]}
            procs.append(start(tmp_path, args, config, ports[region]))
        args, config = pod_spec(topology, "us", "chaosaa-router")
        config["regions"] = {r: local[r] for r in config["regions"]}
        config["eventLog"] = str(tmp_path / "router" / "events.jsonl")
        procs.append(start(tmp_path, args, config, ports["router"]))
        for proc, name in zip(procs, [*topology.names, "router"], strict=True):
            wait_healthy(local[name], proc, tmp_path / f"{ports[name]}.log")
        yield local
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start(tmp: Path, args: list[str], config: dict[str, Any], port: int) -> subprocess.Popen[bytes]:
    component = args[0]
    path = tmp / f"{component}-{port}.json"
    path.write_text(json.dumps(config))
    argv = list(args)
    argv[argv.index("--config") + 1] = str(path)
    argv[argv.index("--listen") + 1] = f"127.0.0.1:{port}"
    with (tmp / f"{port}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "chaosaa.kindsetup.entry", *argv],
            cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
            env={"TMPDIR": str(tmp), "PATH": "/usr/bin:/bin", "CHAOSAA_LAB_LOG_LEVEL": "WARNING"},
        )  # fmt: skip


def test_nodes_started_by_the_entrypoint_replicate_and_the_router_routes(
    demo: dict[str, str],
) -> None:
    status, _, headers = http(
        "PUT", f"{demo['router']}/kv/greeting", b"hello", **{"X-Chaosaa-Home": "eu"}
    )
    assert status == 200
    assert headers["X-Chaosaa-Region"] == "eu"
    deadline = time.monotonic() + 10
    while http("GET", f"{demo['ap']}/kv/greeting")[:2] != (200, b"hello"):
        assert time.monotonic() < deadline, "eu's write never reached ap"
        time.sleep(0.1)
    status, body, headers = http("GET", f"{demo['us']}/metrics")
    assert status == 200 and b"chaosaa_demo_replication_lag_seconds" in body


def test_the_entrypoint_refuses_a_bad_config_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "node.json"
    config.write_text(json.dumps({"region": "us", "peers": {}}))
    proc = subprocess.run(
        [sys.executable, "-m", "chaosaa.kindsetup.entry", "node", "--config", str(config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "node config lacks db" in proc.stderr


def test_listen_addresses_are_parsed_strictly() -> None:
    assert entry.parse_listen("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert entry.parse_listen(":9000") == ("0.0.0.0", 9000)
    for bad in ("8080", "host:", "host:http", "h:70000"):
        with pytest.raises(entry.EntryError):
            entry.parse_listen(bad)
