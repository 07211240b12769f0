"""Benchmark: the lab's link proxy — overhead, and how faithfully it applies conditions.

Runs an in-process LinkProxy in front of a local echo server on 127.0.0.1 and measures:
round-trip time direct vs through a link (overhead), throughput through a link, the
measured round trip under a 50 ms latency condition, and the measured rate under a
1 mbit bandwidth condition. Every loop is bounded in count. Prints a markdown table.
Usage: python bench/lab_proxy.py [ROUND_TRIPS]
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time

from chaosaa.lab.proxy import LinkProxy

PAYLOAD = b"x" * 64


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    s.setblocking(False)
    return s


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    total = 0
    while data := await reader.read(65536):
        total += len(data)
    writer.write(str(total).encode())
    await writer.drain()
    writer.close()


async def _rtts(port: int, n: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        writer.write(PAYLOAD)
        await writer.drain()
        await reader.readexactly(len(PAYLOAD))
        out.append(time.perf_counter() - t0)
    writer.close()
    return out


async def _throughput(port: int, size: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = b"y" * 65536
    t0 = time.perf_counter()
    for _ in range(size // len(chunk)):
        writer.write(chunk)
        await writer.drain()
    writer.write_eof()
    total = int(await reader.read())
    elapsed = time.perf_counter() - t0
    writer.close()
    return total / elapsed


def _ms(values: list[float], q: float) -> str:
    values = sorted(values)
    return f"{values[min(len(values) - 1, int(q * len(values)))] * 1000:.2f} ms"


async def main(n: int) -> None:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    sink = await asyncio.start_server(_sink, "127.0.0.1", 0)
    echo_port = echo.sockets[0].getsockname()[1]
    sink_port = sink.sockets[0].getsockname()[1]
    proxy = LinkProxy()
    await proxy.start()
    e = await proxy.add_link("echo", _listener(), ("127.0.0.1", echo_port))
    s = await proxy.add_link("sink", _listener(), ("127.0.0.1", sink_port))

    direct = await _rtts(echo_port, n)
    proxied = await _rtts(e.listen_port, n)
    tput_direct = await _throughput(sink_port, 64 * 1024 * 1024)
    tput_proxy = await _throughput(s.listen_port, 64 * 1024 * 1024)
    proxy.add_condition(
        {"type": "latency", "delay": 0.05, "targets": [{"link": "echo", "dir": "up"}], "ttl": 60}
    )
    delayed = await _rtts(e.listen_port, min(n, 40))
    proxy.remove_all()
    proxy.add_condition(
        {
            "type": "bandwidth",
            "rate": 125_000,
            "targets": [{"link": "sink", "dir": "up"}],
            "ttl": 60,
        }
    )
    limited = await _throughput(s.listen_port, 2 * 1024 * 1024 // 8)  # 256 KiB at 1 mbit
    await proxy.close()
    for srv in (echo, sink):
        srv.close()

    print("| measurement | direct | through a link |")
    print("|---|---|---|")
    print(f"| round trip p50 ({n} x 64 B) | {_ms(direct, 0.5)} | {_ms(proxied, 0.5)} |")
    print(f"| round trip p99 | {_ms(direct, 0.99)} | {_ms(proxied, 0.99)} |")
    print(f"| throughput (64 MiB) | {tput_direct / 1e6:.0f} MB/s | {tput_proxy / 1e6:.0f} MB/s |")
    print(
        f"| latency 50 ms: round trip p50 / p99 | — | {_ms(delayed, 0.5)} / {_ms(delayed, 0.99)} |"
    )
    print(f"| bandwidth 1 mbit (125 kB/s): measured | — | {limited / 1e3:.1f} kB/s |")
    print(
        f"\nmean added latency per round trip: "
        f"{(statistics.mean(proxied) - statistics.mean(direct)) * 1e6:.0f} µs"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
