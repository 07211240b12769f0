"""Node rules as data: NodeFault validation, placement of GameDay faults, the generated
nft/tc commands and their exact revert, the shell rendering and the executor."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Sequence
from typing import Any

import pytest

from chaosaa.agent.crd import networkfault_crd
from chaosaa.errors import InvalidInputError
from chaosaa.rules import (
    NFT_TABLE,
    TC_ROOT,
    Command,
    NodeFault,
    RuleError,
    execute,
    execute_all,
    node_faults,
    render_sh,
    rules_for,
    teardown,
    watchdog_script,
)
from chaosaa.rules import resource as nf
from chaosaa.rules.generate import (
    chain_names,
    nft_apply,
    nft_revert,
)
from chaosaa.spec.loader import validate_gameday

ADDRS = {
    "us": ["10.10.0.0/16", "172.18.0.2"],
    "eu": ["10.20.0.0/16", "172.18.0.3", "127.0.0.1"],
    "ap": ["10.30.0.0/16", "172.18.0.4", "fd00:30::/64"],
}


def fault(**body: Any) -> Any:
    doc = {
        "apiVersion": "chaosaa.io/v1alpha1",
        "kind": "GameDay",
        "metadata": {"name": "g"},
        "spec": {
            "target": {"kind": "lab", "regions": {"us": {}, "eu": {}, "ap": {}}},
            "faults": [{"name": "f", "duration": "10s", **body}],
        },
    }
    return validate_gameday(doc, "g.yaml").spec.faults[0]


# --------------------------------------------------------------------------- NodeFault


def test_node_fault_normalises_addresses() -> None:
    f = NodeFault(key="k1", type="blackhole", peers=("10.1.2.3", "10.0.0.0/8", "10.0.0.0/8"))
    assert f.peers == ("10.0.0.0/8", "10.1.2.3/32")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"key": "Bad!", "type": "blackhole", "peers": ("10.0.0.1",)}, "key"),
        ({"key": "k", "type": "blackhole", "peers": ("10.0.0.1; drop",)}, "not an IP"),
        ({"key": "k", "type": "blackhole"}, "no peer addresses"),
        ({"key": "k", "type": "latency", "peers": ("10.0.0.1",)}, "delay"),
        ({"key": "k", "type": "replicationLag", "peers": ("10.0.0.1",), "rate": 1e3}, "port"),
        ({"key": "k", "type": "packetLoss", "peers": ("10.0.0.1",), "percent": 0}, "percent"),
        ({"key": "k", "type": "reboot", "peers": ("10.0.0.1",)}, "not a node fault"),
        (
            {"key": "k", "type": "replicationLag", "peers": ("1.1.1.1",), "ports": (70000,)},
            "TCP port",
        ),
    ],
)
def test_node_fault_rejects_bad_input(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason):
        NodeFault(**kwargs)


@pytest.mark.parametrize(
    "f",
    [
        NodeFault(key="a", type="blackhole", peers=("10.0.0.0/8",), direction="ingress"),
        NodeFault(key="b", type="latency", everything=True, local=("10.1.0.0/16",), delay=0.2),
        NodeFault(key="c", type="bandwidth", peers=("fd00::/64",), rate=1e6, allow=("1.2.3.4",)),
        NodeFault(key="d", type="packetLoss", peers=("10.0.0.1",), percent=12.5),
        NodeFault(key="e", type="replicationLag", peers=("10.0.0.1",), mode="pause", ports=(5432,)),
        NodeFault(key="f", type="replicationLag", peers=("10.0.0.1",), rate=64e3, ports=(1, 2)),
    ],
)
def test_node_fault_round_trips_through_the_network_fault_spec(f: NodeFault) -> None:
    assert NodeFault.from_spec(f.to_spec()) == f
    props = networkfault_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert set(f.to_spec()) <= set(props["spec"]["properties"])


# --------------------------------------------------------------------------- placement


def test_region_blackhole_isolates_the_region_from_peers_and_clients() -> None:
    out = node_faults(fault(type="blackhole", regions=["eu"]), ADDRS, run_id="r")
    assert list(out) == ["eu"]
    eu = out["eu"]
    assert eu.everything and eu.direction == "both"
    assert "172.18.0.2/32" in eu.peers and "10.30.0.0/16" in eu.peers
    assert "127.0.0.1/32" not in eu.peers + eu.local  # loopback is never a peer
    assert eu.local == ("10.20.0.0/16", "172.18.0.3/32")


def test_partition_both_cuts_every_group_and_directed_only_the_first() -> None:
    both = node_faults(fault(type="blackhole", partition=[["us"], ["eu", "ap"]]), ADDRS, run_id="r")
    assert set(both) == {"us", "eu", "ap"}
    assert both["eu"].peers == ("10.10.0.0/16", "172.18.0.2/32")
    assert "10.20.0.0/16" not in both["ap"].peers  # same group: not cut
    assert "10.10.0.0/16" in both["ap"].peers
    assert not both["us"].everything
    ingress = node_faults(
        fault(type="blackhole", partition=[["us"], ["eu", "ap"]], direction="ingress"),
        ADDRS,
        run_id="r",
    )
    assert list(ingress) == ["us"] and ingress["us"].direction == "ingress"
    with pytest.raises(InvalidInputError, match="exactly two"):
        node_faults(
            fault(type="blackhole", partition=[["us"], ["eu"], ["ap"]], direction="egress"),
            ADDRS,
            run_id="r",
        )


def test_region_latency_slows_every_link_of_the_region_in_both_directions() -> None:
    out = node_faults(fault(type="latency", regions=["ap"], delay="200ms"), ADDRS, run_id="r")
    assert set(out) == {"us", "eu", "ap"}
    assert out["us"].peers == ("10.30.0.0/16", "172.18.0.4/32", "fd00:30::/64")
    assert "10.10.0.0/16" in out["ap"].peers and "10.20.0.0/16" in out["ap"].peers
    assert out["ap"].delay == 0.2 and not out["ap"].everything
    clients = node_faults(
        fault(type="latency", regions=["ap"], delay="1s", clients=True), ADDRS, run_id="r"
    )
    assert clients["ap"].everything and not clients["us"].everything


def test_links_act_on_the_source_region_only() -> None:
    out = node_faults(
        fault(type="bandwidth", links=[["us", "eu"]], rate="1mbit"), ADDRS, run_id="r"
    )
    assert list(out) == ["us"]
    assert out["us"].peers == ("10.20.0.0/16", "172.18.0.3/32") and out["us"].rate == 1e6


def test_replication_lag_needs_the_replication_port() -> None:
    f = fault(type="replicationLag", links=[["us", "eu"]], mode="pause")
    with pytest.raises(InvalidInputError, match="CHAOSAA_REPLICATION_PORTS"):
        node_faults(f, ADDRS, run_id="r")
    out = node_faults(f, ADDRS, run_id="r", replication_ports=[30081])
    assert out["us"].ports == (30081,) and out["us"].mode == "pause"


def test_fault_keys_differ_per_run_fault_and_region() -> None:
    a = node_faults(fault(type="blackhole", regions=["eu", "ap"]), ADDRS, run_id="r1")
    b = node_faults(fault(type="blackhole", regions=["eu", "ap"]), ADDRS, run_id="r2")
    keys = {a["eu"].key, a["ap"].key, b["eu"].key, b["ap"].key}
    assert len(keys) == 4 and all(re.fullmatch(r"[0-9a-f]{10}", k) for k in keys)


# --------------------------------------------------------------------------- generation


def test_blackhole_rules_live_in_the_chaosaa_table_and_revert_exactly_them() -> None:
    f = NodeFault(key="k1", type="blackhole", peers=("10.0.0.0/8", "fd00::/8"), allow=("10.0.0.1",))
    r = rules_for(f, 1, "eth0")
    assert r.chains == ("ck1_i", "ck1_e") and r.tc_class is None
    text = nft_apply(f)
    assert all(f" inet {NFT_TABLE} " in line for line in text.splitlines()[1:])
    assert "add rule inet chaosaa ck1_i ip saddr @ck1_a4 accept" in text
    assert "ip saddr @ck1_p4 drop" in text and "ip6 daddr @ck1_p6 drop" in text
    assert nft_revert(f).split("\n")[:-1] == [
        "delete chain inet chaosaa ck1_i",
        "delete chain inet chaosaa ck1_e",
        "delete set inet chaosaa ck1_a4",
        "delete set inet chaosaa ck1_p4",
        "delete set inet chaosaa ck1_p6",
    ]
    assert [c.argv for c in r.apply] == [("nft", "-f", "-")]
    # revert: own chains and sets, then the table only if nothing else is in it
    assert r.revert[0].stdin == nft_revert(f)
    assert r.revert[1].argv == ("nft", "delete", "table", "inet", "chaosaa")
    assert r.revert[1].unless is not None


def test_everything_mode_keeps_the_region_loopback_and_link_local() -> None:
    f = NodeFault(key="k2", type="blackhole", everything=True, local=("10.1.0.0/16",))
    text = nft_apply(f)
    assert "ip daddr != @ck2_k4 drop" in text and "ip6 saddr != @ck2_k6 drop" in text
    assert "10.1.0.0/16" in text and "127.0.0.0/8" in text and "fe80::/10" in text


def test_packet_loss_uses_nft_numgen_and_pause_drops_only_the_port() -> None:
    loss = nft_apply(NodeFault(key="l", type="packetLoss", peers=("10.0.0.1",), percent=12.5))
    assert "ip daddr @cl_p4 numgen random mod 10000 < 1250 drop" in loss
    # 100 % is every packet: nft refuses "mod 10000 < 10000" (outside 0-9999)
    every = nft_apply(NodeFault(key="a", type="packetLoss", peers=("10.0.0.1",), percent=100))
    assert "ip daddr @ca_p4 drop" in every and "numgen" not in every
    assert chain_names(NodeFault(key="l", type="packetLoss", peers=("10.0.0.1",), percent=1)) == (
        "cl_e",
    )
    pause = nft_apply(
        NodeFault(key="p", type="replicationLag", peers=("10.0.0.1",), mode="pause", ports=(5432,))
    )
    assert "ip daddr @cp_p4 tcp dport { 5432 } drop" in pause
    assert "ip daddr @cp_p4 tcp sport { 5432 } drop" in pause


def test_tc_faults_use_the_chaosaa_root_and_their_own_slot() -> None:
    f = NodeFault(key="b", type="bandwidth", peers=("10.0.0.0/8",), rate=4e6)
    r = rules_for(f, 3, "eth0")
    root_add = next(c for c in r.apply if "root" in c.argv and "add" in c.argv)
    assert root_add.argv[:9] == (
        "tc",
        "qdisc",
        "add",
        "dev",
        "eth0",
        "root",
        "handle",
        TC_ROOT,
        "htb",
    )
    assert root_add.unless == f"qdisc htb {TC_ROOT} root"  # never stacked on itself
    assert "foreign qdisc" in root_add.explain
    batch = next(c for c in r.apply if c.argv == ("tc", "-batch", "-"))
    assert batch.stdin is not None
    assert "class add dev eth0 parent ca05: classid ca05:3 htb" in batch.stdin
    assert "qdisc add dev eth0 parent ca05:3 handle cb03: tbf rate 4000000bit" in batch.stdin
    assert "pref 14 u32 match ip dst 10.0.0.0/8 flowid ca05:3" in batch.stdin
    assert r.tc_class == "ca05:3"
    # revert: its filters, its class, then the root only when no chaosaa class is left
    assert r.revert[0].argv == ("tc", "-force", "-batch", "-")
    assert r.revert[0].stdin == (
        "filter del dev eth0 parent ca05: pref 14\nclass del dev eth0 classid ca05:3\n"
    )
    last = r.revert[-1]
    assert last.argv == ("tc", "qdisc", "del", "dev", "eth0", "root")
    assert last.when == "qdisc htb ca05: root" and last.unless == "parent ca05:"


def test_latency_uses_netem_and_throttle_matches_the_replication_port() -> None:
    lat = rules_for(
        NodeFault(key="x", type="latency", peers=("10.0.0.1",), delay=0.2, jitter=0.02), 1, "eth0"
    )
    assert "netem delay 200000us 20000us" in (lat.apply[-1].stdin or "")
    thr = rules_for(
        NodeFault(key="y", type="replicationLag", peers=("10.0.0.1",), rate=64e3, ports=(5432,)),
        2,
        "eth0",
    )
    batch = thr.apply[-1].stdin or ""
    assert "htb rate 64000bit ceil 64000bit" in batch
    assert "match ip dport 5432 0xffff flowid ca05:2" in batch
    assert "match ip sport 5432 0xffff flowid ca05:2" in batch


def test_slot_and_device_are_validated() -> None:
    f = NodeFault(key="b", type="bandwidth", peers=("10.0.0.0/8",), rate=4e6)
    with pytest.raises(ValueError, match="slot"):
        rules_for(f, 0, "eth0")
    with pytest.raises(ValueError, match="device"):
        rules_for(f, 1, "eth0; reboot")


def test_teardown_removes_the_table_and_only_chaosaa_root_qdiscs() -> None:
    cmds = teardown(["eth0", "lo"])
    assert cmds[0].argv == ("nft", "delete", "table", "inet", "chaosaa")
    assert all(c.when == "qdisc htb ca05: root" for c in cmds[1:])


# --------------------------------------------------------------------------- shell


def test_rendered_shell_and_watchdog_are_valid_posix_sh() -> None:
    f = NodeFault(key="w", type="bandwidth", peers=("10.0.0.0/8",), rate=4e6)
    r = rules_for(f, 1, "eth0")
    for script in (
        render_sh(r.apply),
        render_sh(r.revert),
        watchdog_script("w", r.revert, "/run/c"),
    ):
        subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    wd = watchdog_script("w", r.revert, "/run/c")
    assert 'exp_file="$d/w.expires"' in wd and "class del dev eth0 classid ca05:1" in wd


# --------------------------------------------------------------------------- executor


class Fake:
    def __init__(self, answers: dict[str, tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[tuple[str, ...], str | None]] = []

    async def __call__(self, argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
        self.calls.append((tuple(argv), stdin))
        return self.answers.get(" ".join(argv), (0, "", ""))


def test_executor_tolerates_gone_objects_and_honours_guards() -> None:
    fake = Fake(
        {
            "a": (2, "", "Error: Cannot find specified filter chain."),
            "show": (0, "qdisc htb ca05: root\nqdisc tbf cb01: parent ca05:1", ""),
        }
    )
    cmds = [
        Command(("a",), tolerate=("Cannot find",)),
        Command(("del",), guard=("show",), when="htb ca05:", unless="parent ca05:"),
        Command(("keep",), guard=("show",), when="htb ca05:"),
    ]
    asyncio.run(execute(cmds, fake))
    assert [c[0] for c in fake.calls] == [("a",), ("show",), ("show",), ("keep",)]


def test_executor_explains_a_missing_kernel_qdisc() -> None:
    fake = Fake({"tc -batch -": (1, "", "Error: Specified qdisc kind is unknown.")})
    f = NodeFault(key="x", type="latency", peers=("10.0.0.1",), delay=0.1)
    r = rules_for(f, 1, "eth0")
    with pytest.raises(RuleError, match="kernel lacks the netem qdisc") as info:
        asyncio.run(execute(r.apply, fake))
    assert info.value.missing_kernel_feature
    assert asyncio.run(execute_all([Command(("tc", "-batch", "-"))], fake))


# --------------------------------------------------------------------------- resource


def test_network_fault_object_names_and_labels_are_valid() -> None:
    f = NodeFault(key="abc", type="blackhole", peers=("10.0.0.1",))
    obj = nf.network_fault(
        f, node="Node_With.Odd", run_id="x" * 80, fault_name="eu-dark", ttl=10, now=0
    )
    name = obj["metadata"]["name"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 253
    for value in obj["metadata"]["labels"].values():
        assert len(value) <= 63 and re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", value)
    assert obj["spec"]["expiresAt"] == "1970-01-01T00:00:10.000Z"
    assert nf.parse_time(obj["spec"]["expiresAt"]) == 10.0


def test_crd_is_cluster_scoped_with_status_and_printer_columns() -> None:
    crd = networkfault_crd()
    assert crd["metadata"]["name"] == "networkfaults.chaosaa.io"
    assert crd["spec"]["scope"] == "Cluster"
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]][:3] == ["Node", "Type", "Phase"]


def test_kubernetes_node_rules_never_cut_the_api_server_nor_the_allowed_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chaosaa.errors import InvalidInputError
    from chaosaa.targets.kubernetes.networkfaults import allow_ports

    monkeypatch.delenv("CHAOSAA_ALLOW_PORTS", raising=False)
    assert allow_ports() == (6443,)
    monkeypatch.setenv("CHAOSAA_ALLOW_PORTS", "9100, 30900 6443")
    assert allow_ports() == (6443, 9100, 30900)
    for bad in ("http", "70000"):
        monkeypatch.setenv("CHAOSAA_ALLOW_PORTS", bad)
        with pytest.raises(InvalidInputError, match="CHAOSAA_ALLOW_PORTS"):
            allow_ports()
