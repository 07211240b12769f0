"""Container entrypoint of the demo image: run the lab's node or router as PID 1.

The lab's node and router take a JSON config and an inherited listening socket (``fd``),
because the lab supervisor binds every port itself. In a container there is no
supervisor, so this entrypoint does its part and nothing more: it binds the listen
address, adds the socket's ``fd`` to the config from the ConfigMap, and ``exec``s the
lab's own command line (``python -m chaosaa.lab.node --config FILE``). The demo code in
the container is exactly the lab's.

    python -m chaosaa.kindsetup.entry node --config /etc/chaosaa/node.json [--listen HOST:PORT]
    python -m chaosaa.kindsetup.entry router --config /etc/chaosaa/router.json [--listen ...]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: component -> (lab module, config keys it needs besides "fd")
COMPONENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "node": ("chaosaa.lab.node", ("region", "db", "peers")),
    "router": ("chaosaa.lab.router", ("regions", "eventLog")),
}


class EntryError(Exception):
    """Bad arguments or config: the message says which."""


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise EntryError(f"--listen {value!r}: expected HOST:PORT, e.g. 0.0.0.0:8080")
    return host or "0.0.0.0", int(port)


def load_config(path: Path, component: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except OSError as exc:
        raise EntryError(f"{path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise EntryError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise EntryError(f"{path}: expected a JSON object")
    missing = [k for k in COMPONENTS[component][1] if k not in config]
    if missing:
        raise EntryError(f"{path}: {component} config lacks {', '.join(missing)}")
    if "fd" in config:
        raise EntryError(f"{path}: 'fd' is set by the entrypoint, remove it from the config")
    if component == "node":
        Path(config["db"]).parent.mkdir(parents=True, exist_ok=True)
    if component == "router":
        Path(config["eventLog"]).parent.mkdir(parents=True, exist_ok=True)
    return config


def listen(host: str, port: int) -> socket.socket:
    """A listening socket that survives exec (like the lab supervisor's)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def prepare(argv: Sequence[str]) -> tuple[list[str], socket.socket]:
    """Bind, write the full config; return the command line to exec and the socket.

    The caller keeps the socket object alive until the exec: closing it closes the fd.
    """
    parser = argparse.ArgumentParser(
        prog="python -m chaosaa.kindsetup.entry",
        description="Run the chaosaa demo node or router in a container.",
    )
    parser.add_argument("component", choices=sorted(COMPONENTS))
    parser.add_argument("--config", type=Path, required=True, help="JSON config (no fd)")
    parser.add_argument("--listen", default="0.0.0.0:8080", help="HOST:PORT [0.0.0.0:8080]")
    args = parser.parse_args(argv)
    module = COMPONENTS[args.component][0]
    config = load_config(args.config, args.component)
    host, port = parse_listen(args.listen)
    try:
        sock = listen(host, port)
    except OSError as exc:
        raise EntryError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    config["fd"] = sock.fileno()
    fd, path = tempfile.mkstemp(prefix=f"chaosaa-{args.component}-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    return [sys.executable, "-m", module, "--config", path], sock


def main(argv: Sequence[str] | None = None) -> None:
    try:
        command, sock = prepare(sys.argv[1:] if argv is None else argv)
    except EntryError as exc:
        sys.exit(f"chaosaa entry: error: {exc}")
    sys.stdout.flush()
    os.execv(command[0], command)
    sock.close()  # not reached: exec replaced this process


if __name__ == "__main__":
    main()
