"""Network namespaces standing in for a node and its peer, and tiny traffic tools.

Every namespace is named ``chaosaa-t-<random>``, addressed from 10.213.0.0/16 inside
itself only, and deleted by whoever created it (:func:`linked_pair` is a context manager).
Traffic tools are small Python programs run with ``ip netns exec``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from tests.conftest import missing

PREFIX = "chaosaa-t-"


def require_root_networking() -> None:
    """Skip locally / fail in CI unless we can make namespaces and use nft + tc."""
    if os.geteuid() != 0:
        missing("netns tests need root (network namespaces, nft, tc)")
    for tool in ("ip", "nft", "tc"):
        if shutil.which(tool) is None:
            missing(f"{tool!r} not found (apt-get install nftables iproute2)")


@dataclass(frozen=True)
class Netns:
    name: str

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, *argv: str, input: str | None = None, check: bool = True, timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*argv), input=input, text=True, capture_output=True, check=check,
            timeout=timeout,
        )  # fmt: skip

    def popen(self, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def python(
        self, code: str, *args: str, timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-c", code, *args, check=False, timeout=timeout)

    def ruleset(self) -> str:
        return self.run("nft", "list", "ruleset").stdout

    def qdiscs(self, device: str) -> str:
        return self.run("tc", "qdisc", "show", "dev", device).stdout


@dataclass(frozen=True)
class Link:
    """A node namespace and a peer namespace joined by a veth pair."""

    node: Netns
    peer: Netns
    node_dev: str
    peer_dev: str
    node_ip: str
    peer_ip: str


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True, timeout=10)


def new_netns() -> Netns:
    name = PREFIX + uuid.uuid4().hex[:8]
    _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")
    return Netns(name)


def delete_netns(ns: Netns) -> None:
    with contextlib.suppress(subprocess.CalledProcessError):
        _ip("netns", "del", ns.name)


@contextlib.contextmanager
def linked_pair(subnet: int = 1) -> Iterator[Link]:
    """node <-> peer over a veth pair: node 10.213.<subnet>.1, peer 10.213.<subnet>.2."""
    node, peer = new_netns(), new_netns()
    try:
        node_dev, peer_dev = "cx-node0", "cx-peer0"
        _ip("link", "add", node_dev, "netns", node.name, "type", "veth", "peer", "name",
            peer_dev, "netns", peer.name)  # fmt: skip
        node_ip, peer_ip = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
        _ip("-n", node.name, "addr", "add", f"{node_ip}/24", "dev", node_dev)
        _ip("-n", peer.name, "addr", "add", f"{peer_ip}/24", "dev", peer_dev)
        _ip("-n", node.name, "link", "set", node_dev, "up")
        _ip("-n", peer.name, "link", "set", peer_dev, "up")
        yield Link(node, peer, node_dev, peer_dev, node_ip, peer_ip)
    finally:
        delete_netns(node)
        delete_netns(peer)


def leftover_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith(PREFIX)]


# --------------------------------------------------------------------------- traffic

_SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(64)
print("ready", flush=True)
def serve(c):
    try:
        while c.recv(65536): pass
    finally: c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

_CONNECT = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except OSError as e:
    print(type(e).__name__, e); sys.exit(1)
"""

#: receive one stream; print bytes/s over [start, end] seconds after the first byte
_SINK = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); a, b = float(sys.argv[3]), float(sys.argv[4])
t0 = None; got = 0
while True:
    d = c.recv(65536)
    now = time.monotonic()
    if not d: break
    t0 = t0 or now
    if a <= now - t0 <= b: got += len(d)
    if now - t0 > b: break
print(got / (b - a), flush=True)
"""

_SOURCE = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
end = time.monotonic() + float(sys.argv[3]); buf = b"x" * 16384
try:
    while time.monotonic() < end: s.sendall(buf)
except OSError: pass
"""

_UDP_SINK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(float(sys.argv[3])); print("ready", flush=True); n = 0
try:
    while True: s.recv(2048); n += 1
except socket.timeout: pass
print(n, flush=True)
"""

_UDP_SOURCE = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    try:  # a local nft drop answers sendto() with EPERM: count it as lost
        s.sendto(b"p" * 100, (sys.argv[1], int(sys.argv[2])))
    except PermissionError: pass
    if i % 50 == 0: time.sleep(0.001)
"""


@contextlib.contextmanager
def tcp_server(ns: Netns, ip: str, port: int) -> Iterator[None]:
    proc = ns.popen(sys.executable, "-u", "-c", _SERVER, ip, str(port))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr and proc.stderr.read()
        yield
    finally:
        proc.kill()
        proc.communicate(timeout=5)


def can_connect(ns: Netns, ip: str, port: int, timeout: float = 1.0) -> bool:
    return ns.python(_CONNECT, ip, str(port), str(timeout)).returncode == 0


def measure_rate(sender: Netns, receiver: Netns, ip: str, port: int, seconds: float = 5.0) -> float:
    """Bytes/s of one TCP stream, measured by the receiver over [1 s, seconds - 1 s]."""
    sink = receiver.popen(sys.executable, "-u", "-c", _SINK, ip, str(port), "1.0", str(seconds - 1))
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        sender.python(_SOURCE, ip, str(port), str(seconds), timeout=seconds + 20)
        out, _ = sink.communicate(timeout=30)
        return float(out.strip().splitlines()[-1])
    finally:
        if sink.poll() is None:
            sink.kill()
        sink.communicate(timeout=5)


def udp_delivered(sender: Netns, receiver: Netns, ip: str, port: int, count: int) -> int:
    sink = receiver.popen(sys.executable, "-u", "-c", _UDP_SINK, ip, str(port), "1.0")
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        sender.python(_UDP_SOURCE, ip, str(port), str(count))
        out, _ = sink.communicate(timeout=30)
        return int(out.strip().splitlines()[-1])
    finally:
        if sink.poll() is None:
            sink.kill()
        sink.communicate(timeout=5)


def netem_unavailable() -> str | None:
    """Why netem cannot be used here (probed in a scratch namespace), or None."""
    ns = new_netns()
    try:
        _ip("link", "add", "cx-probe0", "netns", ns.name, "type", "veth", "peer", "name",
            "cx-probe1", "netns", ns.name)  # fmt: skip
        res = ns.run("tc", "qdisc", "add", "dev", "cx-probe0", "root", "netem", "delay", "1ms",
                     check=False)  # fmt: skip
        if res.returncode != 0:
            return f"netem is not available in this kernel ({res.stderr.strip()})"
        return None
    finally:
        delete_netns(ns)


def wait_for(check: object, timeout: float, interval: float = 0.02) -> float:
    """Poll ``check()`` until true; return seconds waited (AssertionError on timeout)."""
    assert callable(check)
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def shell_transport(ns: Netns) -> object:
    """A rules transport that runs commands inside ``ns`` (as the agent's --netns does)."""
    from chaosaa.agent.node import NodeShell

    return NodeShell(ns.name)
