"""The generated nft/tc rules, applied for real in a network namespace standing in for a
node (root). Effects are observed with real traffic from a peer namespace."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaosaa.agent.node import NodeShell
from chaosaa.rules import (
    NodeFault,
    RuleError,
    arm_commands,
    disarm_command,
    execute,
    present,
    readback,
    renew_command,
    rules_for,
    teardown,
    watchdog_script,
)
from chaosaa.rules.generate import (
    NodeRules,
)
from tests.netns.helpers import (
    Link,
    Netns,
    can_connect,
    measure_rate,
    netem_unavailable,
    tcp_server,
    udp_delivered,
    wait_for,
)

pytestmark = pytest.mark.timeout(90)


def apply(ns: Netns, rules: NodeRules) -> None:
    asyncio.run(execute(rules.apply, NodeShell(ns.name)))


def revert(ns: Netns, rules: NodeRules) -> None:
    asyncio.run(execute(rules.revert, NodeShell(ns.name)))


def is_present(ns: Netns, rules: NodeRules) -> bool:
    nft_argv, tc_argv = readback(rules.device)
    nft = ns.run(*nft_argv, check=False).stdout
    tc = ns.run(*tc_argv, check=False).stdout
    return present(rules, nft, tc)


def _uncounted(text: str) -> str:
    return re.sub(r"direct_packets_stat \d+ ", "", text)


def snapshot(ns: Netns, *devices: str) -> str:
    """The node's ruleset, qdiscs and filters (traffic counters left out)."""
    qdiscs = "".join(ns.qdiscs(d) for d in devices)
    filters = "".join(ns.run("tc", "filter", "show", "dev", d).stdout for d in devices)
    return _uncounted(ns.ruleset() + qdiscs + filters)


@contextlib.contextmanager
def foreign_setup(link: Link) -> Iterator[str]:
    """Someone else's nft table, an ingress qdisc on the node device, and a second device
    with its own root htb: none of it may change."""
    n = link.node
    n.run(
        "nft",
        "-f",
        "-",
        input="table inet foreign {\n chain input { type filter hook input priority 10; "
        "policy accept; tcp dport 9 counter accept; }\n}\n",
    )
    n.run("tc", "qdisc", "add", "dev", link.node_dev, "ingress")
    n.run("ip", "link", "add", "cx-extra0", "type", "veth", "peer", "name", "cx-extra1")
    n.run("ip", "link", "set", "cx-extra0", "up")
    n.run("tc", "qdisc", "add", "dev", "cx-extra0", "root", "handle", "1:", "htb", "default", "1")
    yield "cx-extra0"


def test_blackhole_cuts_tcp_and_revert_restores_it(link: Link) -> None:
    rules = rules_for(
        NodeFault(key="bh", type="blackhole", peers=(link.peer_ip,)), 1, link.node_dev
    )
    before = snapshot(link.node, link.node_dev)
    with tcp_server(link.node, link.node_ip, 7000), tcp_server(link.peer, link.peer_ip, 7001):
        assert can_connect(link.peer, link.node_ip, 7000)
        apply(link.node, rules)
        assert is_present(link.node, rules)
        assert not can_connect(link.peer, link.node_ip, 7000)  # ingress cut
        assert not can_connect(link.node, link.peer_ip, 7001)  # egress cut
        revert(link.node, rules)
        assert can_connect(link.peer, link.node_ip, 7000)
        assert can_connect(link.node, link.peer_ip, 7001)
    assert snapshot(link.node, link.node_dev) == before


def test_every_fault_reverts_exactly_and_foreign_rules_survive(link: Link) -> None:
    peer = (link.peer_ip,)
    faults = [
        NodeFault(key="b1", type="blackhole", peers=("10.99.0.0/16",), direction="ingress"),
        NodeFault(key="p1", type="packetLoss", peers=peer, percent=5),
        NodeFault(key="r1", type="replicationLag", peers=peer, mode="pause", ports=(5432,)),
        NodeFault(key="r2", type="replicationLag", peers=peer, rate=1e6, ports=(6379,)),
        NodeFault(key="w1", type="bandwidth", everything=True, local=("10.1.0.0/16",), rate=5e6),
    ]
    with foreign_setup(link) as extra:
        before = snapshot(link.node, link.node_dev, extra)
        rules = [rules_for(f, slot, link.node_dev) for slot, f in enumerate(faults, start=1)]
        for r in rules:
            apply(link.node, r)
        assert all(is_present(link.node, r) for r in rules)
        assert "table inet foreign" in link.node.ruleset()
        for r in rules[:-1]:
            revert(link.node, r)
            assert not is_present(link.node, r)
        assert is_present(link.node, rules[-1])  # the others' revert left this one alone
        revert(link.node, rules[-1])
        revert(link.node, rules[0])  # idempotent
        assert snapshot(link.node, link.node_dev, extra) == before


def test_teardown_removes_everything_of_chaosaa_and_nothing_else(link: Link) -> None:
    with foreign_setup(link) as extra:
        before = snapshot(link.node, link.node_dev, extra)
        for slot, f in enumerate(
            [
                NodeFault(key="t1", type="blackhole", peers=(link.peer_ip,)),
                NodeFault(key="t2", type="bandwidth", peers=(link.peer_ip,), rate=1e6),
            ],
            start=1,
        ):
            apply(link.node, rules_for(f, slot, link.node_dev))
        asyncio.run(execute(teardown(["lo", link.node_dev, extra]), NodeShell(link.node.name)))
        assert snapshot(link.node, link.node_dev, extra) == before


def test_a_foreign_root_qdisc_is_never_replaced(link: Link) -> None:
    n = link.node
    n.run("tc", "qdisc", "add", "dev", link.node_dev, "root", "handle", "1:", "htb", "default", "1")
    before = _uncounted(n.qdiscs(link.node_dev))
    rules = rules_for(
        NodeFault(key="f1", type="bandwidth", peers=(link.peer_ip,), rate=1e6), 1, link.node_dev
    )
    with pytest.raises(RuleError, match="foreign qdisc"):
        apply(n, rules)
    revert(n, rules)
    assert _uncounted(n.qdiscs(link.node_dev)) == before


def test_bandwidth_limit_is_measured_within_20_percent(link: Link) -> None:
    limit_bits = 8e6
    rules = rules_for(
        NodeFault(key="bw", type="bandwidth", peers=(link.peer_ip,), rate=limit_bits),
        1,
        link.node_dev,
    )
    apply(link.node, rules)
    try:
        rate = measure_rate(link.node, link.peer, link.peer_ip, 7100, seconds=5)
    finally:
        revert(link.node, rules)
    assert 0.8 * limit_bits / 8 <= rate <= 1.2 * limit_bits / 8, f"{rate * 8 / 1e6:.2f} Mbit/s"
    unlimited = measure_rate(link.node, link.peer, link.peer_ip, 7101, seconds=3)
    assert unlimited > 3 * limit_bits / 8  # the limit was the fault, not the machine


def test_replication_throttle_limits_only_the_replication_port(link: Link) -> None:
    limit_bits = 4e6
    rules = rules_for(
        NodeFault(key="rt", type="replicationLag", peers=(link.peer_ip,), rate=limit_bits,
                  ports=(7200,)),
        1,
        link.node_dev,
    )  # fmt: skip
    apply(link.node, rules)
    try:
        throttled = measure_rate(link.node, link.peer, link.peer_ip, 7200, seconds=4)
        other = measure_rate(link.node, link.peer, link.peer_ip, 7201, seconds=3)
    finally:
        revert(link.node, rules)
    assert 0.8 * limit_bits / 8 <= throttled <= 1.2 * limit_bits / 8
    assert other > 3 * limit_bits / 8


def test_replication_pause_blocks_only_the_replication_port(link: Link) -> None:
    rules = rules_for(
        NodeFault(key="rp", type="replicationLag", peers=(link.peer_ip,), mode="pause",
                  ports=(5432,)),
        1,
        link.node_dev,
    )  # fmt: skip
    with tcp_server(link.peer, link.peer_ip, 5432), tcp_server(link.peer, link.peer_ip, 8080):
        apply(link.node, rules)
        try:
            assert not can_connect(link.node, link.peer_ip, 5432)
            assert can_connect(link.node, link.peer_ip, 8080)
        finally:
            revert(link.node, rules)
        assert can_connect(link.node, link.peer_ip, 5432)


def test_packet_loss_drops_about_the_given_share(link: Link) -> None:
    rules = rules_for(
        NodeFault(key="pl", type="packetLoss", peers=(link.peer_ip,), percent=30),
        1,
        link.node_dev,
    )
    apply(link.node, rules)
    try:
        delivered = udp_delivered(link.node, link.peer, link.peer_ip, 7300, 2000)
    finally:
        revert(link.node, rules)
    assert 1250 <= delivered <= 1550, delivered  # 1400 expected, sd ~20
    assert udp_delivered(link.node, link.peer, link.peer_ip, 7301, 500) >= 490


def test_latency_adds_the_delay(link: Link) -> None:
    reason = netem_unavailable()
    if reason:
        pytest.skip(reason)
    rules = rules_for(
        NodeFault(key="lt", type="latency", peers=(link.peer_ip,), delay=0.1), 1, link.node_dev
    )
    with tcp_server(link.peer, link.peer_ip, 7400):
        t0 = time.monotonic()
        assert can_connect(link.node, link.peer_ip, 7400)
        base = time.monotonic() - t0
        apply(link.node, rules)
        try:
            t0 = time.monotonic()
            assert can_connect(link.node, link.peer_ip, 7400)
            slow = time.monotonic() - t0
        finally:
            revert(link.node, rules)
    assert slow - base >= 0.09


def test_latency_without_netem_fails_with_the_reason(link: Link) -> None:
    if netem_unavailable() is None:
        pytest.skip("this kernel has netem")
    rules = rules_for(
        NodeFault(key="lt", type="latency", peers=(link.peer_ip,), delay=0.1), 1, link.node_dev
    )
    before = snapshot(link.node, link.node_dev)
    with pytest.raises(RuleError, match="kernel lacks the netem qdisc"):
        apply(link.node, rules)
    revert(link.node, rules)  # what a transport does after a failed apply
    assert snapshot(link.node, link.node_dev) == before


# --------------------------------------------------------------------------- watchdog


def start_watchdog(ns: Netns, rules: NodeRules, state: Path, ttl: float) -> subprocess.Popen[bytes]:
    key = rules.fault.key
    shell = NodeShell(ns.name)
    asyncio.run(execute(arm_commands(key, int((time.time() + ttl) * 1000), str(state)), shell))
    script = watchdog_script(key, rules.revert, str(state), poll=0.1)
    quiet = subprocess.DEVNULL
    return subprocess.Popen(
        ns.argv("sh", "-c", script), stdout=quiet, stderr=quiet, start_new_session=True
    )


def test_watchdog_reverts_the_rules_when_not_renewed(link: Link, tmp_path: Path) -> None:
    ttl = 2.0
    rules = rules_for(
        NodeFault(key="wd", type="blackhole", peers=(link.peer_ip,)), 1, link.node_dev
    )
    before = snapshot(link.node, link.node_dev)
    watchdog = start_watchdog(link.node, rules, tmp_path, ttl)
    try:
        apply(link.node, rules)
        shell = NodeShell(link.node.name)
        for _ in range(4):  # renewed: stays
            time.sleep(0.5)
            expires = int((time.time() + ttl) * 1000)
            asyncio.run(execute([renew_command("wd", expires, str(tmp_path))], shell))
            last_renewal = time.monotonic()
            assert is_present(link.node, rules)
        wait_for(lambda: not is_present(link.node, rules), timeout=ttl + 3)
        gone_after = time.monotonic() - last_renewal
        watchdog.wait(5)
    finally:
        if watchdog.poll() is None:
            watchdog.kill()
            watchdog.wait(5)
    assert gone_after <= ttl + 1.0, f"reverted {gone_after:.2f}s after the last renewal"
    assert watchdog.returncode == 0
    assert snapshot(link.node, link.node_dev) == before
    assert not list(tmp_path.glob("wd.armed")) and "expired" in (tmp_path / "wd.log").read_text()


def test_disarmed_watchdog_exits_without_touching_the_rules(link: Link, tmp_path: Path) -> None:
    rules = rules_for(
        NodeFault(key="dw", type="blackhole", peers=(link.peer_ip,)), 1, link.node_dev
    )
    watchdog = start_watchdog(link.node, rules, tmp_path, ttl=1.0)
    try:
        apply(link.node, rules)
        wait_for(lambda: (tmp_path / "dw.armed").exists(), timeout=5)
        asyncio.run(execute([disarm_command("dw", str(tmp_path))], NodeShell(link.node.name)))
        watchdog.wait(5)
        time.sleep(1.5)  # past the expiry: nobody reverts
        assert is_present(link.node, rules)
    finally:
        if watchdog.poll() is None:
            watchdog.kill()
        revert(link.node, rules)
    assert sys.platform == "linux"
