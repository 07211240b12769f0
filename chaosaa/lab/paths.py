"""Where a lab keeps its state, and the names of the files in it."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ENV_STATE_DIR = "CHAOSAA_LAB_STATE"
ENV_PROMETHEUS_BIN = "CHAOSAA_PROMETHEUS_BIN"
DEFAULT_REGIONS = ("us", "eu", "ap")
REGION_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")

STATUS_FILE = "lab.json"
LOCK_FILE = "lab.lock"
EVENT_LOG = "router-events.jsonl"

#: the tree this chaosaa was imported from: every lab process runs the same code,
#: installed or not
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def child_environment() -> dict[str, str]:
    """The environment for a lab process: ours, with :data:`PACKAGE_ROOT` on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        x for x in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if x
    )
    return env


def default_state_dir() -> Path:
    env = os.environ.get(ENV_STATE_DIR)
    return Path(env).expanduser() if env else Path.home() / ".chaosaa" / "lab"


def resolve_state_dir(value: str | os.PathLike[str] | None) -> Path:
    """``--state-dir`` wins, then ``$CHAOSAA_LAB_STATE``, then ``~/.chaosaa/lab``."""
    return (Path(value).expanduser() if value else default_state_dir()).absolute()


def validate_regions(regions: list[str]) -> list[str]:
    if not 1 <= len(regions) <= 8:
        raise ValueError("give between 1 and 8 regions, e.g. us,eu,ap")
    if len(set(regions)) != len(regions):
        raise ValueError("region names must be unique")
    for r in regions:
        if r == "router" or not REGION_RE.match(r):
            raise ValueError(
                f"invalid region name {r!r}: lowercase letters, digits and '-', "
                "starting with a letter, at most 16 characters, not 'router'"
            )
    return regions


class StatePaths:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.status = root / STATUS_FILE
        self.lock = root / LOCK_FILE
        self.events = root / EVENT_LOG
        self.logs = root / "logs"
        self.run = root / "run"
        self.data = root / "data"
        self.prometheus_data = root / "prometheus-data"
        self.supervisor_log = self.logs / "supervisor.log"

    def remove_run_state(self) -> None:
        """Remove what only a running lab needs: the status file, generated configs, data.
        Logs and the router's event log stay."""
        for f in (self.status, self.status.with_suffix(".tmp")):
            f.unlink(missing_ok=True)
        for d in (self.run, self.prometheus_data, self.data):
            shutil.rmtree(d, ignore_errors=True)
