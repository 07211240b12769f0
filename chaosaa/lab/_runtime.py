"""Plumbing shared by the lab's processes: parent-death handling, logging, sockets, metrics."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import signal
import socket
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent (the supervisor) dies.

    SIGKILL is used because it also ends a process that is SIGSTOPped (regionDown), which
    no in-process watchdog could do. If the parent died before this call, exit now.
    """
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(libc_name, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)


def child_config(description: str) -> dict[str, Any]:
    """Start a lab child process: parse ``--config``/``--parent``, die with the parent.

    Returns the JSON config the supervisor wrote for this child.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--parent", type=int, default=None)
    args = parser.parse_args()
    die_with_parent(args.parent)
    config: dict[str, Any] = json.loads(args.config.read_text())
    return config


def setup_logging(name: str) -> None:
    logging.basicConfig(
        level=os.environ.get("CHAOSAA_LAB_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiohttp's access log is one line per request: far too loud at lab traffic rates.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def inherited_socket(fd: int) -> socket.socket:
    """A listening socket bound by the supervisor and passed down by file descriptor.

    The supervisor binds every port itself and hands the open socket to the child, so a
    port can never be taken by someone else between "picked" and "listening".
    """
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


def iso(unix: float) -> str:
    """A Unix time as the lab's APIs write it: UTC, ISO 8601, milliseconds, ``Z``."""
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def reset(transport: asyncio.Transport) -> None:
    """Close with RST, not FIN, like a firewall reject mid-stream."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def metrics_handler(
    registry: CollectorRegistry,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


async def wait_for_shutdown_signal() -> None:
    """Block until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task, then wait until each has finished."""
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t


@contextlib.asynccontextmanager
async def serving(app: web.Application, fd: int) -> AsyncIterator[None]:
    """Serve ``app`` on the inherited listening socket ``fd`` for the duration of the body."""
    runner = await serve_app(app, inherited_socket(fd))
    try:
        yield
    finally:
        await runner.cleanup()


async def serve_app(app: web.Application, sock: socket.socket) -> web.AppRunner:
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    return runner


async def json_object(request: web.Request, invalid: Callable[[str], Exception]) -> dict[str, Any]:
    """The request's body as a JSON object (``{}`` without a body); anything else raises
    ``invalid(message)``."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise invalid(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid("body must be a JSON object")
    return body
