"""The ``lab`` target: the local multi-region lab, driven only through its HTTP APIs.

The lab is found through its status file (``<state dir>/lab.json``, which names the
supervisor URL); everything else is HTTP, exactly as for a remote deployment. When no lab
is running and ``options.ephemeral`` is set, ``open`` starts one with ``chaosaa lab up``
in a temporary state directory and ``close`` stops it with ``chaosaa lab down``.
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
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from chaosaa.errors import FaultError, LeaseHeldError, TargetUnreachableError
from chaosaa.spec.model import (
    FAULT_TYPES,
    BandwidthFault,
    BlackholeFault,
    Fault,
    LatencyFault,
    PacketLossFault,
    RegionDownFault,
    ReplicationLagFault,
)
from chaosaa.targets.base import (
    AppliedFault,
    Endpoints,
    PlannedAction,
    Target,
    TargetEvent,
    register,
)

ENV_STATE_DIR = "CHAOSAA_LAB_STATE"
STATUS_FILE = "lab.json"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_UP_TIMEOUT = 120.0
_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10.0)

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


def fault_body(fault: Fault, ttl: float, fault_id: str) -> dict[str, Any]:
    """The supervisor's ``POST /faults`` body for a GameDay fault."""
    body: dict[str, Any] = {"id": fault_id, "name": fault.name, "type": fault.type, "ttl": ttl}
    if isinstance(fault, BlackholeFault):
        if fault.regions is not None:
            body["regions"] = list(fault.regions)
        else:
            body["partition"] = [list(g) for g in fault.partition or []]
        body["direction"] = fault.direction
        body["clients"] = fault.cuts_clients
    elif isinstance(fault, RegionDownFault):
        body["regions"] = list(fault.regions)
    else:
        if fault.regions is not None:
            body["regions"] = list(fault.regions)
        else:
            body["links"] = [list(link) for link in fault.links or []]
        if isinstance(fault, LatencyFault):
            body.update(delay=fault.delay, jitter=fault.jitter, clients=fault.clients)
        elif isinstance(fault, ReplicationLagFault):
            body["mode"] = fault.mode
            body["bandwidth"] = fault.bandwidth / 8  # the lab API takes bytes/s numbers
        elif isinstance(fault, BandwidthFault):
            body["rate"] = fault.rate / 8
        elif isinstance(fault, PacketLossFault):
            body["percent"] = fault.percent
    return body


def _scopes(fault: Fault) -> list[str]:
    regions = getattr(fault, "regions", None)
    if regions:
        return [f"region {r}" for r in regions]
    partition = getattr(fault, "partition", None)
    if partition:
        return [" | ".join(",".join(g) for g in partition)]
    return [f"link {a}->{b}" for a, b in getattr(fault, "links", None) or []]


def describe(fault: Fault) -> str:
    if isinstance(fault, BlackholeFault):
        who = "peers and clients" if fault.cuts_clients else "peers"
        scope = "between the partition's groups" if fault.partition else f"to/from {who}"
        return f"link proxies hold every stream {scope} ({fault.direction})"
    if isinstance(fault, LatencyFault):
        who = " (client links too)" if fault.clients else ""
        return f"link proxies delay data by {fault.delay:g}s ± {fault.jitter:g}s{who}"
    if isinstance(fault, ReplicationLagFault):
        if fault.mode == "pause":
            return "link proxies hold replication pushes (replication links only)"
        return f"link proxies throttle replication links to {fault.bandwidth:g} bit/s"
    if isinstance(fault, RegionDownFault):
        return "SIGSTOP the region's demo node process (SIGCONT on revert)"
    if isinstance(fault, BandwidthFault):
        return f"link proxies limit bandwidth to {fault.rate:g} bit/s"
    return f"link proxies stall {fault.percent:g}% of chunks for a TCP retransmission timeout"


@register
class LabTarget(Target):
    """Local lab target: a thin HTTP client of the lab supervisor's fault API."""

    kind: ClassVar[str] = "lab"
    supported_faults: ClassVar[frozenset[str]] = frozenset(FAULT_TYPES)

    _session: aiohttp.ClientSession | None = None
    _status: dict[str, Any] | None = None
    _ephemeral_dir: Path | None = None
    _owns_tempdir: bool = False

    def plan(self, fault: Fault) -> list[PlannedAction]:
        return [PlannedAction(fault.name, scope, describe(fault)) for scope in _scopes(fault)]

    # -- discovery -------------------------------------------------------------------
    @property
    def supervisor(self) -> str:
        if self._status is None:
            raise TargetUnreachableError("lab target is not open")
        return str(self._status["supervisor"])

    @property
    def state_dir(self) -> Path:
        if self._ephemeral_dir is not None:
            return self._ephemeral_dir
        return Path(self.options.state_dir) if self.options.state_dir else default_state_dir()

    async def open(self) -> Endpoints:
        self._session = aiohttp.ClientSession(timeout=_HTTP_TIMEOUT)
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
        self._status = status
        return self.endpoints()

    def endpoints(self) -> Endpoints:
        if self._status is None:
            raise TargetUnreachableError("lab target is not open")
        s = self._status
        return Endpoints(
            entry_url=str(s["router"]),
            # Direct node URLs: per-region reads must see each region's own data even while
            # its client link is cut (canary lag, lost-write read-back).
            regions={r: str(s["regions"][r]["nodeUrl"]) for r in self.spec.regions},
            prometheus_url=str(s["prometheus"]),
            queries={
                "successRatio": SUCCESS_RATIO,
                "replicationLag": REPLICATION_LAG,
                "conflicts": CONFLICTS,
            },
            query_delay_seconds=SUCCESS_RATIO_DELAY,
        )

    @property
    def status(self) -> dict[str, Any]:
        """The lab's last status document (router, prometheus, regions, links, ...)."""
        if self._status is None:
            raise TargetUnreachableError("lab target is not open")
        return self._status

    async def _discover(self, state_dir: Path) -> dict[str, Any] | None:
        doc = await asyncio.to_thread(_read_status_file, state_dir)
        if doc is None or "supervisor" not in doc:
            return None
        try:
            status: dict[str, Any] = await self._call("GET", f"{doc['supervisor']}/status")
        except (TargetUnreachableError, _HttpStatusError):
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
        try:
            out, err = await asyncio.wait_for(proc.communicate(), _UP_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return 1, "", f"`chaosaa lab {args[0]}` timed out after {_UP_TIMEOUT:g}s"
        return proc.returncode or 0, out.decode(), err.decode()

    async def close(self) -> None:
        try:
            await self.stop_ephemeral()
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None

    # -- HTTP ------------------------------------------------------------------------
    async def _call(
        self, method: str, url: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 202)
    ) -> Any:
        if self._session is None:
            raise TargetUnreachableError("lab target is not open")
        try:
            async with self._session.request(method, url, json=body) as resp:
                text = await resp.text()
                data = json.loads(text) if text else None
                if resp.status not in ok:
                    detail = data.get("error") if isinstance(data, dict) else text
                    raise _HttpStatusError(resp.status, str(detail))
                return data
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise TargetUnreachableError(f"lab {method} {url}: {exc}") from exc

    # -- lease -----------------------------------------------------------------------
    async def acquire_lease(self, holder: str, ttl: float) -> None:
        try:
            await self._call("POST", f"{self.supervisor}/lease", {"holder": holder, "ttl": ttl})
        except _HttpStatusError as exc:
            if exc.status == 409:
                raise LeaseHeldError(exc.detail) from exc
            raise TargetUnreachableError(f"lab lease: {exc.detail}") from exc

    async def renew_lease(self, holder: str, ttl: float) -> None:
        await self.acquire_lease(holder, ttl)

    async def release_lease(self, holder: str) -> None:
        with contextlib.suppress(TargetUnreachableError):
            await self._call("DELETE", f"{self.supervisor}/lease?holder={holder}")

    # -- faults ----------------------------------------------------------------------
    def fault_id(self, fault: Fault) -> str:
        return _ID_UNSAFE.sub("-", f"{self.options.run_id}-{fault.name}")[:64]

    async def inject(self, fault: Fault, ttl: float) -> AppliedFault:
        fid = self.fault_id(fault)
        try:
            resp = await self._call(
                "POST", f"{self.supervisor}/faults", fault_body(fault, ttl, fid)
            )
        except _HttpStatusError as exc:
            raise FaultError(f"fault {fault.name!r}: the lab refused it: {exc.detail}") from exc
        return AppliedFault(fault, fid, self.plan(fault), {"lab": resp})

    async def verify_effect(self, applied: AppliedFault) -> bool:
        try:
            result = await self._call("GET", f"{self.supervisor}/faults/{applied.ref}/verify")
        except _HttpStatusError:
            applied.pending = []
            return False
        applied.state["verifyEffect"] = result
        applied.pending = _failed_checks(result, "active")
        return bool(result.get("state") == "active" and result.get("verified"))

    async def renew(self, applied: AppliedFault, ttl: float) -> None:
        try:
            await self._call("POST", f"{self.supervisor}/faults/{applied.ref}/renew", {"ttl": ttl})
        except _HttpStatusError as exc:
            raise FaultError(
                f"fault {applied.fault.name!r} could not be renewed (it may have expired): "
                f"{exc.detail}"
            ) from exc

    async def revert(self, applied: AppliedFault) -> None:
        try:
            await self._call("DELETE", f"{self.supervisor}/faults/{applied.ref}", ok=(200, 404))
        except _HttpStatusError as exc:
            raise FaultError(f"fault {applied.fault.name!r}: revert failed: {exc.detail}") from exc

    async def verify_reverted(self, applied: AppliedFault) -> bool:
        try:
            result = await self._call("GET", f"{self.supervisor}/faults/{applied.ref}/verify")
        except _HttpStatusError as exc:
            applied.pending = []
            if exc.status != 404:
                return False
            listed = await self._call("GET", f"{self.supervisor}/faults")
            return all(f["id"] != applied.ref for f in listed["faults"])
        applied.state["verifyRevert"] = result
        applied.pending = _failed_checks(result, "reverted")
        return bool(result.get("state") == "reverted" and result.get("verified"))

    async def rollback(self) -> list[str]:
        if self._status is None:
            status = await self._discover(self.state_dir)
            if status is None:
                return []
            self._status = status
        reverted = await self._call("DELETE", f"{self.supervisor}/faults")
        proxy = await self._call("DELETE", f"{self._status['proxy']['admin']}/conditions")
        out = [f"reverted lab fault {fid}" for fid in reverted["reverted"]]
        if proxy.get("removed"):
            out.append(f"removed {proxy['removed']} orphan link-proxy condition(s)")
        return out

    async def events(self, since: float) -> list[TargetEvent]:
        data = await self._call("GET", str(self.status["routerEvents"]["url"]))
        out = []
        for e in data["events"]:
            if e["unix"] < since:
                continue
            detail = {k: v for k, v in e.items() if k not in ("event", "unix", "ts")}
            out.append(
                TargetEvent(at=float(e["unix"]), event=f"router.{e['event']}", detail=detail)
            )
        return out


def _failed_checks(result: dict[str, Any], want: str) -> list[str]:
    """What the supervisor's verification found not holding, for a timeout's message."""
    if result.get("state") != want:
        return [f"fault state {result.get('state')} (want {want})"]
    out = []
    for check in result.get("checks") or []:
        if not check.get("ok"):
            seen = (check.get("probe") or {}).get("outcome")
            out.append(str(check.get("check")) + (f" (probe: {seen})" if seen else ""))
    return out


class _HttpStatusError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
