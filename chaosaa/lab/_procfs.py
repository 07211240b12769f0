"""What ``/proc`` says about a process (the lab runs on Linux only)."""

from __future__ import annotations


def process_state(pid: int) -> str | None:
    """One-letter state (``T`` = stopped, ``Z`` = zombie), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (in parentheses) may hold anything, even ")": split after the last.
    return stat.rsplit(b")", 1)[1].split()[0].decode("ascii")
