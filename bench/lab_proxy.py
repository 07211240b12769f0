"""Benchmark: the lab's link proxy against a direct connection and against Toxiproxy.

Three separate processes do the work, so no one's event loop or GIL is shared with the
client: an echo/sink server process (this file with ``--serve``), the lab link proxy
(``python -m chaosaa.lab.proxy``, started exactly as the lab supervisor starts it, with
inherited listening sockets), and Toxiproxy (built by ``bench/toxiproxy/build.sh`` into
``~/.cache/chaosaa/bench/``, on first use when Go is available; without Go the table has
no Toxiproxy column). The client uses blocking sockets with TCP_NODELAY and
interleaves the paths round by round, so drift on a shared machine hits all of them alike.

Measured, on 127.0.0.1, with the same payloads for every path:
- round trip of a 64 B and a 16 KiB message on one open connection (p50/p99), the paths
  taking turns round trip by round trip;
- connect + one 64 B round trip + close (what the lab's probes and health checks do);
- throughput of one stream and of 4 parallel streams (client -> sink);
- the proxy process's CPU time per 64 B round trip and per MB forwarded (robust to a
  noisy machine, unlike latency);
- fidelity: round trip under a 50 ms latency condition (toxic) and the measured rate
  under a 1 mbit (125 kB/s) bandwidth condition (toxic).

Every loop is bounded in count and time. Prints markdown tables.
Usage: python bench/lab_proxy.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaosaa.lab.control import http_json

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = Path(
    os.environ.get("CHAOSAA_BENCH_BIN")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chaosaa" / "bench"
)
TOXIPROXY = BIN_DIR / "toxiproxy-server"
SMALL = b"x" * 64
LARGE = b"z" * 16 * 1024
STREAM_CHUNK = 256 * 1024
SOCKET_TIMEOUT = 10.0


# -- the upstream servers (a separate process) ---------------------------------------------
def _echo_conn(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn, contextlib.suppress(OSError):
        buf = bytearray(256 * 1024)
        view = memoryview(buf)
        while n := conn.recv_into(buf):
            conn.sendall(view[:n])


def _sink_conn(conn: socket.socket) -> None:
    """Reads an 8-byte size, then that many bytes, and answers with the count it got.

    Framed rather than EOF-delimited: Toxiproxy does not forward a half-close.
    """
    with conn, contextlib.suppress(OSError):
        buf = bytearray(1024 * 1024)
        head = memoryview(bytearray(8))
        _recv_exactly(conn, head)
        left = total = int.from_bytes(head, "big")
        while left > 0 and (n := conn.recv_into(buf, min(left, len(buf)))):
            left -= n
        conn.sendall(str(total - left).encode().ljust(20))


def _accept_loop(sock: socket.socket, handler: Callable[[socket.socket], None]) -> None:
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


def serve() -> None:
    """Echo and sink servers on ephemeral ports; prints them, then serves until stdin closes."""
    socks = []
    for handler in (_echo_conn, _sink_conn):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, 0))
        s.listen(128)
        socks.append(s)
        threading.Thread(target=_accept_loop, args=(s, handler), daemon=True).start()
    print(json.dumps({"echo": socks[0].getsockname()[1], "sink": socks[1].getsockname()[1]}))
    sys.stdout.flush()
    sys.stdin.read()  # the bench closes our stdin when it is done (or dies)


# -- the paths under test ----------------------------------------------------------------
@dataclass
class Path_:
    name: str
    echo: int
    sink: int
    #: apply/clear conditions: (kind, value) -> None; None for the direct path
    condition: Callable[[str, float], None] | None = None
    clear: Callable[[], None] | None = None
    #: the proxy process (None for the direct path), for its CPU time
    pid: int | None = None
    results: dict[str, Any] = field(default_factory=dict)

    def cpu(self) -> float:
        """CPU seconds (user + system) the proxy process has used so far."""
        if self.pid is None:
            return 0.0
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _http(method: str, url: str, body: Any = None, timeout: float = 5.0) -> Any:
    return http_json(method, url, body, timeout)


def _wait_http(url: str, proc: subprocess.Popen[bytes], limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            _http("GET", url, timeout=1.0)
            return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {limit}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc``; kill it if it has not exited within 5 s."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _listener() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, 0))
    s.listen(512)
    s.set_inheritable(True)
    return s


@contextlib.contextmanager
def lab_proxy(ports: dict[str, int], workdir: Path) -> Iterator[Path_]:
    """The lab's link-proxy process, started the way the supervisor starts it."""
    admin = _listener()
    links = {name: _listener() for name in ports}
    config = {
        "adminFd": admin.fileno(),
        "links": [
            {"name": n, "fd": s.fileno(), "upstreamHost": HOST, "upstreamPort": ports[n]}
            for n, s in links.items()
        ],
    }
    cfg = workdir / "proxy.json"
    cfg.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CHAOSAA_LAB_LOG_LEVEL": "WARNING"}
    with (workdir / "proxy.log").open("ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chaosaa.lab.proxy", "--config", str(cfg)],
            pass_fds=(admin.fileno(), *(s.fileno() for s in links.values())),
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://{HOST}:{admin.getsockname()[1]}"
    port = {n: int(s.getsockname()[1]) for n, s in links.items()}
    for s in (admin, *links.values()):
        s.close()
    try:
        _wait_http(f"{url}/healthz", proc)

        def condition(kind: str, value: float) -> None:
            link = "echo" if kind == "latency" else "sink"
            body: dict[str, Any] = {"type": kind, "targets": [{"link": link, "dir": "up"}]}
            body.update({"ttl": 120, ("delay" if kind == "latency" else "rate"): value})
            _http("POST", f"{url}/conditions", body)

        def clear() -> None:
            _http("DELETE", f"{url}/conditions")

        yield Path_("lab proxy", port["echo"], port["sink"], condition, clear, proc.pid)
    finally:
        _stop(proc)


def _ensure_toxiproxy() -> bool:
    """Build the pinned Toxiproxy when it is missing and Go is available."""
    if TOXIPROXY.exists():
        return True
    if shutil.which("go") is None:
        print(f"{TOXIPROXY} is missing and there is no Go toolchain: no Toxiproxy column")
        return False
    script = ROOT / "bench" / "toxiproxy" / "build.sh"
    subprocess.run(["bash", str(script)], check=True, timeout=600, stdout=subprocess.DEVNULL)
    return TOXIPROXY.exists()


def _toxiproxy_version() -> str:
    out = subprocess.run(
        [str(TOXIPROXY), "-version"], capture_output=True, text=True, timeout=10, check=True
    )
    return out.stdout.strip().rsplit(" ", 1)[-1]


@contextlib.contextmanager
def toxiproxy(ports: dict[str, int], workdir: Path) -> Iterator[Path_]:
    api_port = _free_port()
    url = f"http://{HOST}:{api_port}"
    with (workdir / "toxiproxy.log").open("ab") as logf:
        proc = subprocess.Popen(
            [str(TOXIPROXY), "-host", HOST, "-port", str(api_port)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOG_LEVEL": "warn"},
        )
    try:
        _wait_http(f"{url}/version", proc)
        port = {}
        for name, upstream in ports.items():
            body = {"name": name, "listen": f"{HOST}:0", "upstream": f"{HOST}:{upstream}"}
            created = _http("POST", f"{url}/proxies", body)
            port[name] = int(created["listen"].rsplit(":", 1)[1])

        def condition(kind: str, value: float) -> None:
            proxy = "echo" if kind == "latency" else "sink"
            attrs = (
                {"latency": int(value * 1000)}
                if kind == "latency"
                else {"rate": int(value // 1000)}
            )
            body = {"type": kind, "stream": "upstream", "attributes": attrs}
            _http("POST", f"{url}/proxies/{proxy}/toxics", body)

        def clear() -> None:
            _http("POST", f"{url}/reset")

        name = f"Toxiproxy {_toxiproxy_version()}"
        yield Path_(name, port["echo"], port["sink"], condition, clear, proc.pid)
    finally:
        _stop(proc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# -- measurements (client side, blocking sockets) ------------------------------------------
def _connect(port: int) -> socket.socket:
    s = socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _recv_exactly(s: socket.socket, buf: memoryview) -> None:
    got = 0
    while got < len(buf):
        n = s.recv_into(buf[got:])
        if not n:
            raise ConnectionError("closed")
        got += n


def round_trips(port: int, payload: bytes, n: int) -> list[float]:
    out = []
    buf = memoryview(bytearray(len(payload)))
    with _connect(port) as s:
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(payload)
            _recv_exactly(s, buf)
            out.append(time.perf_counter() - t0)
    return out


def interleaved_round_trips(paths: list[Path_], payload: bytes, n: int) -> dict[str, list[float]]:
    """``n`` round trips per path on one open connection each, the paths taking turns in a
    new random order every time, so that a noisy neighbour slows all of them alike."""
    out: dict[str, list[float]] = {p.name: [] for p in paths}
    buf = memoryview(bytearray(len(payload)))
    socks = {p.name: _connect(p.echo) for p in paths}
    try:
        for _ in range(n):
            for p in random.sample(paths, len(paths)):
                s = socks[p.name]
                t0 = time.perf_counter()
                s.sendall(payload)
                _recv_exactly(s, buf)
                out[p.name].append(time.perf_counter() - t0)
    finally:
        for s in socks.values():
            s.close()
    return out


def interleaved_connects(paths: list[Path_], n: int) -> dict[str, list[float]]:
    """Connect, one 64 B round trip, close; the paths taking turns as above."""
    out: dict[str, list[float]] = {p.name: [] for p in paths}
    buf = memoryview(bytearray(len(SMALL)))
    for _ in range(n):
        for p in random.sample(paths, len(paths)):
            t0 = time.perf_counter()
            with _connect(p.echo) as s:
                s.sendall(SMALL)
                _recv_exactly(s, buf)
            out[p.name].append(time.perf_counter() - t0)
    return out


def _stream(port: int, size: int) -> int:
    chunk = memoryview(b"y" * STREAM_CHUNK)
    reply = memoryview(bytearray(20))
    with _connect(port) as s:
        s.sendall(size.to_bytes(8, "big"))
        for _ in range(size // STREAM_CHUNK):
            s.sendall(chunk)
        s.sendall(chunk[: size % STREAM_CHUNK])
        _recv_exactly(s, reply)
    return int(bytes(reply).strip())


def throughput(port: int, size: int, streams: int) -> float:
    """Bytes per second, client -> sink, over ``streams`` parallel connections."""
    totals: list[int] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            totals.append(_stream(port, size // streams))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(streams)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    if sum(totals) != size // streams * streams:
        raise RuntimeError(f"sink received {sum(totals)} of {size} bytes")
    return sum(totals) / elapsed


def limited_rate(port: int, size: int) -> float:
    t0 = time.perf_counter()
    got = _stream(port, size)
    return got / (time.perf_counter() - t0)


# -- report --------------------------------------------------------------------------------
def _q(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _us(v: float) -> str:
    return f"{v * 1e6:.0f} µs" if v < 0.01 else f"{v * 1000:.1f} ms"


def machine_notes(extra: dict[str, str]) -> str:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    notes = {
        "nproc": str(os.cpu_count()),
        "CPU": cpu,
        "kernel": platform.release(),
        "Python": platform.python_version(),
        **extra,
    }
    return ", ".join(f"{k}: {v}" for k, v in notes.items())


def run(quick: bool) -> None:
    have_toxiproxy = _ensure_toxiproxy()
    rounds = 3 if quick else 6
    rtt_n = 300 if quick else 1000
    conn_n = 60 if quick else 150
    size = (64 if quick else 256) * 1024 * 1024
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert server.stdin is not None and server.stdout is not None
    started = time.monotonic()
    try:
        ports = json.loads(server.stdout.readline())
        workdir = Path(tempfile.mkdtemp(prefix="chaosaa-bench-proxy-"))
        with contextlib.ExitStack() as stack:
            paths = [Path_("direct", ports["echo"], ports["sink"])]
            paths.append(stack.enter_context(lab_proxy(ports, workdir)))
            if have_toxiproxy:
                paths.append(stack.enter_context(toxiproxy(ports, workdir)))
            by_name = {p.name: p.results for p in paths}
            for p in paths:  # warm-up: first connections, buffers, page cache
                round_trips(p.echo, SMALL, 50)
                throughput(p.sink, 16 * 1024 * 1024, 1)
            for _ in range(rounds):
                for key, payload, n in (("small", SMALL, rtt_n), ("large", LARGE, rtt_n // 2)):
                    cpu = {p.name: p.cpu() for p in paths}
                    for name, values in interleaved_round_trips(paths, payload, n).items():
                        by_name[name].setdefault(key, []).extend(values)
                    for p in paths:
                        spent = p.cpu() - cpu[p.name]
                        p.results[f"cpu_{key}"] = p.results.get(f"cpu_{key}", 0.0) + spent
                for name, values in interleaved_connects(paths, conn_n).items():
                    by_name[name].setdefault("connect", []).extend(values)
                for p in random.sample(paths, len(paths)):
                    cpu_before = p.cpu()
                    p.results.setdefault("tput1", []).append(throughput(p.sink, size, 1))
                    p.results["cpu_tput1"] = p.results.get("cpu_tput1", 0.0) + p.cpu() - cpu_before
                    p.results.setdefault("tput4", []).append(throughput(p.sink, size, 4))
            for p in paths[1:]:
                assert p.condition is not None and p.clear is not None
                p.condition("latency", 0.05)
                p.results["delayed"] = round_trips(p.echo, SMALL, 20)
                p.condition("bandwidth", 125_000)
                p.results["limited"] = limited_rate(p.sink, 256 * 1024)
                p.clear()
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        server.stdin.close()
        server.wait(5)
    elapsed = time.monotonic() - started

    direct = paths[0].results
    head = "| measurement | " + " | ".join(p.name for p in paths) + " |"
    print(head)
    print("|---" * (len(paths) + 1) + "|")

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        print(f"| {label} | " + " | ".join(cell(p.results) for p in paths) + " |")

    def quantiles(key: str, *qs: float) -> Callable[[dict[str, Any]], str]:
        def cell(r: dict[str, Any]) -> str:
            return " / ".join(_us(_q(r[key], q)) for q in qs) if key in r else "—"

        return cell

    def rate(key: str) -> Callable[[dict[str, Any]], str]:
        def cell(r: dict[str, Any]) -> str:
            return f"{statistics.median(r[key]) / 1e6:.0f} MB/s"

        return cell

    def added(r: dict[str, Any]) -> str:
        # Paired: the direct round trip taken in the same turn, under the same conditions.
        diffs = [a - b for a, b in zip(r["small"], direct["small"], strict=True)]
        return f"{_us(_q(diffs, 0.5))} / {_us(_q(diffs, 0.99))}"

    for key, label in (("small", "64 B"), ("large", "16 KiB")):
        row(f"round trip {label} p50 ({len(direct[key])}x)", quantiles(key, 0.5))
        row(f"round trip {label} p99", quantiles(key, 0.99))
    row("added latency 64 B p50 / p99 (paired with direct)", added)
    row(
        f"connect + 64 B round trip p50 / p99 ({len(direct['connect'])}x)",
        quantiles("connect", 0.5, 0.99),
    )
    row(
        "proxy CPU per 64 B round trip",
        lambda r: _us(r["cpu_small"] / len(r["small"])) if r.get("cpu_small") else "—",
    )
    row(f"throughput 1 stream, {size >> 20} MiB (median of {rounds})", rate("tput1"))
    row(
        "proxy CPU per MB forwarded (1 stream)",
        lambda r: (
            f"{r['cpu_tput1'] / (size * rounds / 1e6) * 1e3:.2f} ms" if r.get("cpu_tput1") else "—"
        ),
    )
    row(f"throughput 4 streams, {size >> 20} MiB (median of {rounds})", rate("tput4"))
    row("latency 50 ms: round trip p50 / p99", quantiles("delayed", 0.5, 0.99))
    row(
        "bandwidth 125 kB/s: measured (256 KiB)",
        lambda r: f"{r['limited'] / 1e3:.1f} kB/s" if "limited" in r else "—",
    )
    toxi = _toxiproxy_version() if have_toxiproxy else "not built (no Go toolchain)"
    print(f"\n{machine_notes({'Toxiproxy': toxi})}; bench took {elapsed:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
    else:
        run(args.quick)


if __name__ == "__main__":
    main()
