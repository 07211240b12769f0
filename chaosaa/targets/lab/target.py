"""The ``lab`` target: the local multi-region lab, driven only through its HTTP APIs.

The lab is found through its status file (``<state dir>/lab.json``, which names the
supervisor URL and, for a database system, the databases' credentials); everything else
is HTTP, exactly as for a remote deployment. When no lab is running and
``options.ephemeral`` is set, ``open`` starts one with ``chaosaa lab up`` (``--system``
from ``target.system``) in a temporary state directory and ``close`` stops it with
``chaosaa lab down``.

What the lab runs decides the default queries: the demo's own metrics, or the database
system's exporters (``lab.json`` names its lag, readiness and conflict queries); a
database system also supplies its datastore, so the engine's canaries watch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from chaosaa.canary import Connection
from chaosaa.errors import LeaseHeldError, TargetUnreachableError
from chaosaa.spec.faults import Fault
from chaosaa.spec.model import Target as TargetSpec
from chaosaa.targets.base import Endpoints, Target, TargetEvent, TargetOptions, register
from chaosaa.targets.lab.api import HttpStatusError, LabApi
from chaosaa.targets.lab.faults import HANDLERS

ENV_STATE_DIR = "CHAOSAA_LAB_STATE"
STATUS_FILE = "lab.json"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_UP_TIMEOUT = 120.0
#: a database system starts its servers first (slow on a loaded machine)
_UP_TIMEOUT_DATABASES = 360.0

SUCCESS_RATIO = (
    'sum(irate(chaosaa_router_requests_total{code!~"5.."}[5s]))'
    " / sum(irate(chaosaa_router_requests_total[5s]))"
)
#: irate needs a second scrape after a change (one 1 s interval), and the router counts a
#: failed request when its 1 s upstream timeout fires, not when the probe sent it
SUCCESS_RATIO_DELAY = 2.0
REPLICATION_LAG = "max(chaosaa_demo_replication_lag_seconds)"
#: last-writer-wins resolutions summed over regions; the engine takes a before/after difference
CONFLICTS = "sum(chaosaa_demo_conflicts_total)"


def default_state_dir() -> Path:
    env = os.environ.get(ENV_STATE_DIR)
    return Path(env).expanduser() if env else Path.home() / ".chaosaa" / "lab"


def _read_status_file(state_dir: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((state_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


@register
class LabTarget(Target):
    """Local lab target: a thin HTTP client of the lab supervisor's fault API."""

    kind: ClassVar[str] = "lab"
    handlers = HANDLERS

    def __init__(self, spec: TargetSpec, options: TargetOptions) -> None:
        self.api = LabApi()
        self._ephemeral_dir: Path | None = None
        self._owns_tempdir = False
        #: what the run set up on the lab (its capacity), for the report's timeline
        self._setup_events: list[TargetEvent] = []
        #: the database system's section of lab.json (with credentials), if any
        self._system: dict[str, Any] = {}
        super().__init__(spec, options)

    def settings(self) -> list[str]:
        return [
            f"capacity of {region}: {capacity.describe()}"
            for region, capacity in self.spec.lab_capacity().items()
        ]

    @property
    def system(self) -> str:
        """What the GameDay needs the lab to run (``target.system``, default the demo)."""
        return self.spec.system or "demo"

    def handler_context(self) -> LabApi:
        return self.api

    # -- discovery -------------------------------------------------------------------
    @property
    def supervisor(self) -> str:
        return self.api.supervisor

    @property
    def status(self) -> dict[str, Any]:
        """The lab's last status document (router, prometheus, regions, links, ...)."""
        return self.api.status

    @property
    def state_dir(self) -> Path:
        if self._ephemeral_dir is not None:
            return self._ephemeral_dir
        return Path(self.options.state_dir) if self.options.state_dir else default_state_dir()

    async def open(self) -> Endpoints:
        self.api.open()
        status = await self._discover(self.state_dir)
        if status is None:
            if not self.options.ephemeral:
                raise TargetUnreachableError(
                    f"no lab is running in {self.state_dir}; start one with `chaosaa lab up`"
                )
            status = await self.start_ephemeral()
        missing = set(self.spec.regions) - set(status["regions"])
        if missing:
            raise TargetUnreachableError(
                f"the lab in {self.state_dir} has regions {', '.join(status['regions'])}; "
                f"the GameDay needs {', '.join(sorted(missing))}"
            )
        running = (status.get("system") or {}).get("name", "demo")
        if self.spec.system is not None and running != self.spec.system:
            raise TargetUnreachableError(
                f"the lab in {self.state_dir} runs system {running}; the GameDay needs "
                f"{self.spec.system} (target.system): stop it with `chaosaa lab down` or use "
                "another lab state directory"
            )
        self.api.status = status
        doc = await asyncio.to_thread(_read_status_file, self.state_dir) or {}
        self._system = dict(doc.get("system") or {})
        return self.endpoints()

    def endpoints(self) -> Endpoints:
        s = self.api.status
        return Endpoints(
            entry_url=str(s["router"]),
            # Direct node URLs: per-region reads must see each region's own data even while
            # its client link is cut (canary lag, lost-write read-back).
            regions={r: str(s["regions"][r]["nodeUrl"]) for r in self.spec.regions},
            prometheus_url=str(s["prometheus"]),
            queries=self._queries(),
            query_delay_seconds=SUCCESS_RATIO_DELAY,
            datastores=self._datastores(),
        )

    def _queries(self) -> dict[str, str]:
        """The demo's metrics, or the database system's (where it has one of each)."""
        queries = {"successRatio": SUCCESS_RATIO}
        if self._system.get("name", "demo") == "demo":
            return {**queries, "replicationLag": REPLICATION_LAG, "conflicts": CONFLICTS}
        for key, field in (
            ("replicationLag", "lagQuery"),
            ("conflicts", "conflictsQuery"),
            ("regionReady", "readyQuery"),
        ):
            if self._system.get(field):
                queries[key] = str(self._system[field])
        return queries

    def _datastores(self) -> dict[str, dict[str, Connection]]:
        """The database system's own datastore: each region's server, for the canaries."""
        store = self._system.get("datastore")
        if not store:
            return {}
        conns = {
            r: Connection(
                kind=store["kind"],
                host=str(c["host"]),
                port=int(c["port"]),
                user=str(c["user"]),
                password=str(c["password"]),
                database=str(c["database"]),
            )
            for r, c in store["regions"].items()
            if r in self.spec.regions
        }
        return {str(self._system["name"]): conns} if len(conns) >= 2 else {}

    async def _discover(self, state_dir: Path) -> dict[str, Any] | None:
        doc = await asyncio.to_thread(_read_status_file, state_dir)
        if doc is None or "supervisor" not in doc:
            return None
        try:
            status: dict[str, Any] = await self.api.call("GET", f"{doc['supervisor']}/status")
        except (TargetUnreachableError, HttpStatusError):
            return None
        return status if status.get("phase") == "ready" else None

    async def start_ephemeral(self) -> dict[str, Any]:
        """Start a lab for this run (``chaosaa lab up``) in its own state directory."""
        if self.options.state_dir:
            self._ephemeral_dir = Path(self.options.state_dir)
        else:
            self._ephemeral_dir = Path(
                await asyncio.to_thread(tempfile.mkdtemp, prefix="chaosaa-lab-")
            )
            self._owns_tempdir = True
        # the lab watches this process: a killed run leaves no lab behind
        code, out, err = await self._lab_cli(
            "up",
            "--regions",
            ",".join(self.spec.regions),
            "--system",
            self.system,
            "-o",
            "json",
            "--owner-pid",
            str(os.getpid()),
        )
        if code != 0:
            await self.stop_ephemeral()
            raise TargetUnreachableError(f"could not start an ephemeral lab: {err.strip()}")
        status: dict[str, Any] = json.loads(out)
        return status

    async def stop_ephemeral(self) -> None:
        if self._ephemeral_dir is None:
            return
        await self._lab_cli("down")
        if self._owns_tempdir:
            await asyncio.to_thread(shutil.rmtree, self._ephemeral_dir, True)
        self._ephemeral_dir = None
        self._owns_tempdir = False

    @property
    def ephemeral(self) -> bool:
        return self._ephemeral_dir is not None

    async def _lab_cli(self, *args: str) -> tuple[int, str, str]:
        assert self._ephemeral_dir is not None
        # A subprocess, not an import: the core reaches the lab only from outside.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chaosaa.cli.lab",
            args[0],
            "--state-dir",
            str(self._ephemeral_dir),
            *args[1:],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        limit = _UP_TIMEOUT if self.system == "demo" else _UP_TIMEOUT_DATABASES
        try:
            out, err = await asyncio.wait_for(proc.communicate(), limit)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return 1, "", f"`chaosaa lab {args[0]}` timed out after {limit:g}s"
        return proc.returncode or 0, out.decode(), err.decode()

    async def close(self) -> None:
        try:
            await self.stop_ephemeral()
        finally:
            await self.api.close()

    # -- lease -----------------------------------------------------------------------
    async def acquire_lease(self, holder: str, ttl: float) -> None:
        """Take the lab's lease, then set the GameDay's capacity (``target.lab.capacity``):
        the lab keeps it while the lease is held and puts its own back when it ends."""
        await self.renew_lease(holder, ttl)
        wanted = self.spec.lab_capacity()
        if not wanted:
            return
        body = {
            "holder": holder,
            "regions": {r: c.model_dump(by_alias=True) for r, c in wanted.items()},
        }
        try:
            await self.api.supervisor_call("PUT", "/capacity", body)
        except HttpStatusError as exc:
            raise TargetUnreachableError(f"lab capacity: {exc.detail}") from exc
        detail = {r: c.describe() for r, c in wanted.items()}
        self._setup_events.append(TargetEvent(at=time.time(), event="capacity", detail=detail))

    async def renew_lease(self, holder: str, ttl: float) -> None:
        try:
            await self.api.supervisor_call("POST", "/lease", {"holder": holder, "ttl": ttl})
        except HttpStatusError as exc:
            if exc.status == 409:
                raise LeaseHeldError(exc.detail) from exc
            raise TargetUnreachableError(f"lab lease: {exc.detail}") from exc

    async def release_lease(self, holder: str) -> None:
        with contextlib.suppress(TargetUnreachableError):
            await self.api.supervisor_call("DELETE", f"/lease?holder={holder}")

    # -- faults ----------------------------------------------------------------------
    def fault_ref(self, fault: Fault) -> str:
        return _ID_UNSAFE.sub("-", f"{self.options.run_id}-{fault.name}")[:64]

    async def rollback(self) -> list[str]:
        if not self.api.known:
            status = await self._discover(self.state_dir)
            if status is None:
                return []
            self.api.status = status
        reverted = await self.api.supervisor_call("DELETE", "/faults")
        proxy = await self.api.call("DELETE", f"{self.api.status['proxy']['admin']}/conditions")
        out = [f"reverted lab fault {fid}" for fid in reverted["reverted"]]
        if proxy.get("removed"):
            out.append(f"removed {proxy['removed']} orphan link-proxy condition(s)")
        return out

    async def events(self, since: float) -> list[TargetEvent]:
        data = await self.api.call("GET", str(self.status["routerEvents"]["url"]))
        out = list(self._setup_events)
        for e in data["events"]:
            if e["unix"] < since:
                continue
            detail = {k: v for k, v in e.items() if k not in ("event", "unix", "ts")}
            out.append(
                TargetEvent(at=float(e["unix"]), event=f"router.{e['event']}", detail=detail)
            )
        return out
