"""Exec a foreign binary (Prometheus) so that it dies with the lab supervisor.

``python -m chaosaa.lab._exec --parent PID -- BINARY ARGS...``: sets PR_SET_PDEATHSIG,
which survives exec, then replaces itself with the binary.
"""

from __future__ import annotations

import os
import sys

from chaosaa.lab._runtime import die_with_parent


def main() -> None:
    argv = sys.argv[1:]
    parent: int | None = None
    if argv[:1] == ["--parent"]:
        parent = int(argv[1])
        argv = argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        sys.exit("usage: python -m chaosaa.lab._exec [--parent PID] -- BINARY [ARGS...]")
    die_with_parent(parent)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
