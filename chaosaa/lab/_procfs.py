"""What ``/proc`` says about a process (the lab runs on Linux only)."""

from __future__ import annotations

import os


def process_state(pid: int) -> str | None:
    """One-letter state (``T`` = stopped, ``Z`` = zombie), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (in parentheses) may hold anything, even ")": split after the last.
    return stat.rsplit(b")", 1)[1].split()[0].decode("ascii")


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat.rsplit(b")", 1)[1].split()[1])


def descendants(pid: int) -> list[int]:
    """Every living descendant of ``pid`` (children first, then theirs)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(0), [])
        out += kids
        todo += kids
    return out
