"""The kind target through its docker CLI seam: a recording runner plays Docker (there is
no Docker engine here) and the tests assert the exact command sequence and outcomes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from chaosaa.errors import FaultError, LeaseHeldError, TargetUnreachableError
from chaosaa.rules.model import fault_key
from chaosaa.rules.shell import (
    FAILED_MARK,
    READBACK_MARK,
)
from chaosaa.spec.loader import validate_gameday
from chaosaa.targets.base import TargetOptions
from chaosaa.targets.kind import KindTarget

NODES = {
    "chaosaa-us": ["chaosaa-us-control-plane"],
    "chaosaa-eu": ["chaosaa-eu-control-plane", "chaosaa-eu-worker"],
    "chaosaa-ap": ["chaosaa-ap-control-plane"],
}
IPS = {
    "chaosaa-us-control-plane": "172.18.0.2",
    "chaosaa-eu-control-plane": "172.18.0.3",
    "chaosaa-eu-worker": "172.18.0.4",
    "chaosaa-ap-control-plane": "172.18.0.5",
}
SUBNETS = {"chaosaa-us": "10.10.0.0/16", "chaosaa-eu": "10.20.0.0/16", "chaosaa-ap": "10.30.0.0/16"}


class RecordingDocker:
    """Answers like the docker CLI for three kind clusters; records every command.

    Node state is simulated just enough: nft listings show the chains applied by
    ``nft -f -`` (and drop them on delete), ``docker pause`` flips ``.State.Paused``.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], str | None]] = []
        self.chains: dict[str, set[str]] = {n: set() for ns in NODES.values() for n in ns}
        self.paused: set[str] = set()
        #: the scripts run with `docker exec -i NODE sh -s`, per node
        self.scripts: list[tuple[str, str]] = []

    async def run(self, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
        argv = tuple(argv)
        self.calls.append((argv, stdin))
        if argv[:2] == ("docker", "ps"):
            cluster = argv[3].rsplit("=", 1)[1]
            return 0, "\n".join(NODES.get(cluster, [])) + "\n", ""
        if argv[:2] == ("docker", "inspect"):
            names = argv[4:]
            if "Paused" in argv[3]:
                lines = [f"/{n} {'true' if n in self.paused else 'false'}" for n in names]
                return 0, "\n".join(lines) + "\n", ""
            return 0, " ".join(f"{IPS[n]} " for n in names) + "\n", ""
        if argv[:2] in (("docker", "pause"), ("docker", "unpause")):
            for n in argv[2:]:
                (self.paused.add if argv[1] == "pause" else self.paused.discard)(n)
            return 0, "", ""
        if argv[:2] == ("docker", "exec"):
            rest = [a for a in argv[2:] if a not in ("-i", "-d")]
            node, cmd = rest[0], tuple(rest[1:])
            if cmd == ("cat", "/kind/kubeadm.conf"):
                cluster = next(c for c, ns in NODES.items() if node in ns)
                return 0, f"networking:\n  podSubnet: {SUBNETS[cluster]}\n", ""
            if cmd == ("sh", "-s"):  # a checked script: rules, then maybe their read-back
                assert stdin is not None
                self.scripts.append((node, stdin))
                # what the script itself runs (not what its watchdog would run later)
                for body in re.findall(
                    r"nft -f - 2>&1 <<'CHAOSAA_EOF'\n(.*?)\nCHAOSAA_EOF", stdin, re.S
                ):
                    self._nft(node, body)
                if READBACK_MARK not in stdin:
                    return 0, "", ""
                table = self._table(node) if self.chains[node] else ""
                tc = "qdisc noqueue 0: root refcnt 2\n"
                return 0, f"{READBACK_MARK}nft\n{table}{READBACK_MARK}tc\n{tc}", ""
            if cmd == ("nft", "-f", "-"):
                assert stdin is not None
                self._nft(node, stdin)
                return 0, "", ""
            if cmd[:3] == ("nft", "list", "table"):
                if not self.chains[node]:
                    return 1, "", "Error: No such file or directory"
                return 0, self._table(node), ""
            if cmd[:2] == ("sh", "-c") and "## chaosaa device" in cmd[2]:  # rollback's listing
                table = self._table(node) if self.chains[node] else ""
                devices = "".join(
                    f"## chaosaa device {d}\nqdisc noqueue 0: root refcnt 2\n"
                    for d in ("eth0", "lo")
                )
                return 0, table + devices, ""
            if cmd == ("nft", "delete", "table", "inet", "chaosaa"):
                self.chains[node].clear()
                return 0, "", ""
            if cmd[:3] == ("tc", "qdisc", "show"):
                return 0, "qdisc noqueue 0: root refcnt 2\n", ""
            return 0, "", ""
        return 0, "", ""

    def _nft(self, node: str, text: str) -> None:
        for chain in re.findall(r"add chain inet chaosaa (\S+) ", text):
            self.chains[node].add(chain)
        for chain in re.findall(r"delete chain inet chaosaa (\S+)", text):
            self.chains[node].discard(chain)

    def _table(self, node: str) -> str:
        body = "".join(f"\tchain {c} {{\n\t}}\n" for c in sorted(self.chains[node]))
        return f"table inet chaosaa {{\n{body}}}\n"

    def node_calls(self) -> list[tuple[str, ...]]:
        return [c for c, _ in self.calls if c[:2] == ("docker", "exec")]


def gameday(*faults: dict[str, Any]) -> Any:
    doc = {
        "apiVersion": "chaosaa.io/v1alpha1",
        "kind": "GameDay",
        "metadata": {"name": "kind-test"},
        "spec": {
            "target": {
                "kind": "kind",
                "regions": {r: {"cluster": f"chaosaa-{r}"} for r in ("us", "eu", "ap")},
            },
            "faults": [{"duration": "10s", **f} for f in faults],
        },
    }
    return validate_gameday(doc, "kind-test.yaml")


def target(docker: RecordingDocker, tmp_path: Path) -> KindTarget:
    gd = gameday({"name": "x", "type": "regionDown", "regions": ["eu"]})
    opts = TargetOptions(run_id="run-1", state_dir=str(tmp_path))
    return KindTarget(gd.spec.target, opts, runner=docker)


def ms_digits(script: str) -> str:
    """The expiry (unix ms) a watchdog was armed with."""
    found = re.search(r"/run/chaosaa (\d{13}) ", script)
    assert found, script[:400]
    return found.group(1)


async def _until(check: Any) -> None:
    for _ in range(50):
        if await check():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_open_finds_nodes_by_cluster_label_and_their_addresses(tmp_path: Path) -> None:
    docker = RecordingDocker()
    t = target(docker, tmp_path)
    asyncio.run(t.open())
    assert [c for c, _ in docker.calls][:4] == [
        ("docker", "ps", "--filter", "label=io.x-k8s.kind.cluster=chaosaa-us", "--format",
         "{{.Names}}"),
        ("docker", "inspect", "-f", "{{.Name}} {{.State.Paused}}", "chaosaa-us-control-plane"),
        ("docker", "inspect", "-f",
         "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.GlobalIPv6Address}} {{end}}",
         "chaosaa-us-control-plane"),
        ("docker", "exec", "chaosaa-us-control-plane", "cat", "/kind/kubeadm.conf"),
    ]  # fmt: skip
    assert t.regions["eu"].nodes == ["chaosaa-eu-control-plane", "chaosaa-eu-worker"]
    assert t.regions["eu"].addresses == ["10.20.0.0/16", "172.18.0.3", "172.18.0.4"]


def test_a_paused_cluster_is_refused_with_what_to_do(tmp_path: Path) -> None:
    docker = RecordingDocker()
    docker.paused.add("chaosaa-ap-control-plane")
    with pytest.raises(TargetUnreachableError, match=r"'chaosaa-ap' \(region ap\) is paused"):
        asyncio.run(target(docker, tmp_path).open())
    # rollback finds (and unpauses) it all the same
    rollback = TargetOptions(state_dir=str(tmp_path), extra={"rollback": True})
    t = KindTarget(gameday().spec.target, rollback, runner=docker)
    asyncio.run(t.open())
    assert "container chaosaa-ap-control-plane: unpaused" in asyncio.run(t.rollback())


def test_missing_cluster_is_an_environment_error(tmp_path: Path) -> None:
    docker = RecordingDocker()
    gd = gameday()
    gd.spec.target.regions["eu"] = gd.spec.target.regions["eu"].model_copy(
        update={"cluster": "nope"}
    )
    t = KindTarget(gd.spec.target, TargetOptions(state_dir=str(tmp_path)), runner=docker)
    with pytest.raises(TargetUnreachableError, match="no node containers of kind cluster 'nope'"):
        asyncio.run(t.open())


def test_blackhole_arms_a_watchdog_then_applies_nft_in_each_node(tmp_path: Path) -> None:
    docker = RecordingDocker()
    t = target(docker, tmp_path)
    fault = gameday({"name": "eu-dark", "type": "blackhole", "regions": ["eu"]}).spec.faults[0]

    async def scenario() -> None:
        await t.open()
        docker.calls.clear()
        applied = await t.inject(fault, 10.0)
        key = fault_key("run-1", "eu-dark", "eu")
        node = "chaosaa-eu-control-plane"
        # one round trip per node: arm and start the watchdog (detached), apply, read back
        assert [c for c in docker.node_calls() if node in c] == [
            ("docker", "exec", "-i", node, "sh", "-s")
        ]
        script = dict(docker.scripts)[node]
        watchdog = script.index("chaosaa watchdog")
        assert f"/run/chaosaa {ms_digits(script)} {key}" in script[:watchdog]
        assert f"delete chain inet chaosaa c{key}_e" in script[watchdog:]
        assert watchdog < script.index("nft -f - 2>&1") < script.index(READBACK_MARK)
        # only eu's two nodes were touched
        assert {n for n, _ in docker.scripts} == {"chaosaa-eu-control-plane", "chaosaa-eu-worker"}
        # the read-back of that same round trip verifies the effect: no second ask
        docker.calls.clear()
        assert await t.verify_effect(applied)
        assert docker.node_calls() == []
        await t.renew(applied, 10.0)
        renewals = docker.node_calls()
        assert len(renewals) == 2 and all(c[-1].endswith(f"{key}.expires") for c in renewals)
        docker.calls.clear()
        docker.scripts.clear()
        await t.revert(applied)
        assert [c for c in docker.node_calls() if node in c] == [
            ("docker", "exec", "-i", node, "sh", "-s")
        ]
        script = dict(docker.scripts)[node]
        disarm = f"rm -f /run/chaosaa/{key}.armed /run/chaosaa/{key}.expires"
        assert script.index(disarm) < script.index(f"delete chain inet chaosaa c{key}_e")
        assert await t.verify_reverted(applied)
        # later verifications ask the node again
        docker.calls.clear()
        assert await t.verify_reverted(applied)
        assert len(docker.node_calls()) == 2

    asyncio.run(scenario())


def test_a_failure_on_one_node_is_undone_on_every_node(tmp_path: Path) -> None:
    class FailingDocker(RecordingDocker):
        async def run(self, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
            applying = tuple(argv[-2:]) == ("sh", "-s") and "add table" in (stdin or "")
            if applying and "chaosaa-eu-worker" in argv:
                self.calls.append((tuple(argv), stdin))
                error = "Error: Could not process rule: Operation not supported"
                return 0, f"{FAILED_MARK}1 1\n{error}\n", ""
            return await super().run(argv, stdin)

    docker = FailingDocker()
    t = target(docker, tmp_path)
    fault = gameday({"name": "eu-dark", "type": "blackhole", "regions": ["eu"]}).spec.faults[0]

    async def scenario() -> None:
        await t.open()
        with pytest.raises(FaultError, match=r"nft rules of fault .*: Operation not supported"):
            await t.inject(fault, 10.0)

    asyncio.run(scenario())
    key = fault_key("run-1", "eu-dark", "eu")
    disarm = f"rm -f /run/chaosaa/{key}.armed /run/chaosaa/{key}.expires"
    reverted = [n for n, script in docker.scripts if disarm in script]
    assert sorted(reverted) == ["chaosaa-eu-control-plane", "chaosaa-eu-worker"]
    assert docker.chains["chaosaa-eu-control-plane"] == set()  # its rules were removed too


def test_region_down_pauses_nodes_under_a_host_watchdog(tmp_path: Path) -> None:
    docker = RecordingDocker()
    t = target(docker, tmp_path)
    fault = gameday({"name": "eu-down", "type": "regionDown", "regions": ["eu"]}).spec.faults[0]

    async def scenario() -> None:
        await t.open()
        docker.calls.clear()
        applied = await t.inject(fault, 10.0)
        calls = [c for c, _ in docker.calls]
        # the host watchdog is armed and started before anything is paused
        assert calls[0][:2] == ("sh", "-c") and calls[0][4] == str(tmp_path / "chaosaa-kind")
        assert "docker unpause chaosaa-eu-control-plane chaosaa-eu-worker" in calls[0][-1]
        assert calls[1] == ("docker", "pause", "chaosaa-eu-control-plane", "chaosaa-eu-worker")
        assert await t.verify_effect(applied)
        docker.calls.clear()
        await t.revert(applied)
        calls = [c for c, _ in docker.calls]
        assert calls[0][:2] == ("rm", "-f")
        assert calls[1] == ("docker", "unpause", "chaosaa-eu-control-plane", "chaosaa-eu-worker")
        assert await t.verify_reverted(applied)

    asyncio.run(scenario())


def test_the_lease_refuses_a_second_run(tmp_path: Path) -> None:
    docker = RecordingDocker()
    a, b = target(docker, tmp_path), target(docker, tmp_path)

    async def scenario() -> None:
        await a.acquire_lease("run-a", 15)
        with pytest.raises(LeaseHeldError, match="run-a"):
            await b.acquire_lease("run-b", 15)
        await a.release_lease("run-a")
        await b.acquire_lease("run-b", 15)
        await b.release_lease("run-b")

    asyncio.run(scenario())


def test_rollback_unpauses_disarms_and_tears_down_every_node(tmp_path: Path) -> None:
    docker = RecordingDocker()
    docker.paused.add("chaosaa-eu-worker")
    docker.chains["chaosaa-ap-control-plane"].add("cabc_e")
    t = target(docker, tmp_path)
    removed = asyncio.run(t.rollback())
    assert "container chaosaa-eu-worker: unpaused" in removed
    assert any("chaosaa-ap-control-plane: nft table inet chaosaa" in r for r in removed)
    calls = [c for c, _ in docker.calls]
    assert ("docker", "unpause", "chaosaa-eu-worker") in calls
    # every watchdog disarmed: on the host, and on every node before its rules are listed
    disarm = ("sh", "-c", 'rm -f "$1"/*.armed "$1"/*.expires', "sh", str(tmp_path / "chaosaa-kind"))
    assert calls.index(disarm) < calls.index(("docker", "unpause", "chaosaa-eu-worker"))
    listings = [c for c in calls if c[3:5] == ("sh", "-c")]
    assert sorted(c[2] for c in listings) == sorted(IPS)
    assert all(c[5].startswith('rm -f "$1"/*.armed') for c in listings)
    # only the node with chaosaa's rules is torn down
    teardowns = [c for c in calls if c[3:] == ("nft", "delete", "table", "inet", "chaosaa")]
    assert [c[2] for c in teardowns] == ["chaosaa-ap-control-plane"]
    assert docker.chains["chaosaa-ap-control-plane"] == set()


def test_preflight_refuses_latency_naming_netem_before_touching_anything(
    tmp_path: Path,
) -> None:
    class NoNetem(RecordingDocker):
        async def run(self, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
            if "unshare" in argv and "netem" in (stdin or ""):
                self.calls.append((tuple(argv), stdin))
                return 2, "", "Error: Specified qdisc kind is unknown.\nCommand failed -:2\n"
            return await super().run(argv, stdin)

    docker = NoNetem()
    t = target(docker, tmp_path)
    gd = gameday({"name": "slow", "type": "latency", "links": [["us", "eu"]], "delay": "200ms"})

    async def scenario() -> None:
        await t.open()
        docker.calls.clear()
        with pytest.raises(FaultError, match=r"kernel lacks the netem qdisc") as err:
            await t.preflight(list(gd.spec.faults))
        assert "fault 'slow'" in str(err.value)

    asyncio.run(scenario())
    # the probe ran in a throwaway namespace (unshare -n) on one us node; nothing else ran
    assert [c[3:6] for c, _ in docker.calls] == [("chaosaa-us-control-plane", "unshare", "-n")]


def test_a_partition_leaves_the_client_port_alone(tmp_path: Path) -> None:
    docker = RecordingDocker()
    t = target(docker, tmp_path)
    split = {"name": "split", "type": "blackhole", "partition": [["us"], ["eu", "ap"]]}
    dark = {"name": "dark", "type": "blackhole", "regions": ["eu"]}
    gd = gameday(split, dark)

    async def rules_of(fault: Any) -> str:
        docker.calls.clear()
        await t.inject(fault, 10.0)
        return next(s for c, s in docker.calls if c[-2:] == ("sh", "-s") and s)

    async def scenario() -> None:
        await t.open()
        # the router (in us) reaches eu and ap on the client NodePort: not cut
        assert "tcp dport { 30080, 30082, 30900 } accept" in await rules_of(gd.spec.faults[0])
        # a region cut off from clients too: only monitoring stays
        assert "tcp dport { 30082, 30900 } accept" in await rules_of(gd.spec.faults[1])

    asyncio.run(scenario())
