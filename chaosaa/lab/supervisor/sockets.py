"""Ports: the supervisor binds every one itself, on 127.0.0.1, and passes the open sockets
to the children, so no port can be taken between "picked" and "listening"."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def listen_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, 0))
    s.listen(512)
    s.set_inheritable(True)
    return s


def free_port() -> int:
    """A free port for Prometheus, which cannot take an inherited socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def url(sock: socket.socket) -> str:
    return f"http://{HOST}:{port(sock)}"
