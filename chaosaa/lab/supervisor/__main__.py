"""``python -m chaosaa.lab.supervisor --state-dir DIR --regions us,eu,ap
--prometheus-bin PATH [--system NAME]``: the lab supervisor process, started detached by
``chaosaa lab up`` (:mod:`chaosaa.lab.control`). It holds ``lab.lock`` for its lifetime."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import logging
import os
import sys
from pathlib import Path

from chaosaa.lab import _runtime
from chaosaa.lab.paths import StatePaths, validate_regions
from chaosaa.lab.supervisor.core import Supervisor
from chaosaa.lab.supervisor.databases import SYSTEM_NAMES, build_system

log = logging.getLogger("chaosaa.lab.supervisor")


def main() -> None:
    parser = argparse.ArgumentParser(description="chaosaa lab supervisor")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--regions", required=True)
    parser.add_argument("--prometheus-bin", required=True)
    parser.add_argument("--router-policy", default="{}", help="JSON HealthPolicy overrides")
    parser.add_argument("--owner-pid", type=int, default=None, help="stop when this pid exits")
    parser.add_argument(
        "--capacity", default="{}", help="JSON: region -> capacity (chaosaa.lab.capacity)"
    )
    parser.add_argument("--system", choices=SYSTEM_NAMES, default="demo")
    args = parser.parse_args()
    _runtime.setup_logging("supervisor")
    paths = StatePaths(args.state_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(paths.lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.error("another lab supervisor holds %s", paths.lock)
        sys.exit(3)
    try:
        os.write(lock_fd, str(os.getpid()).encode())
        sup = Supervisor(
            paths,
            validate_regions(args.regions.split(",")),
            args.prometheus_bin,
            build_system(args.system, paths.logs),
            json.loads(args.router_policy),
            owner_pid=args.owner_pid,
            capacity=json.loads(args.capacity),
        )
        asyncio.run(sup.run())
    finally:
        paths.remove_run_state()
        paths.lock.unlink(missing_ok=True)
        os.close(lock_fd)
        log.info("lab stopped")


if __name__ == "__main__":
    main()
