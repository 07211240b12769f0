"""The lab supervisor: owns every lab process and the fault API.

Started detached by ``chaosaa lab up``. It binds every port itself (passing the sockets
to the children by file descriptor), spawns one demo node per region, the router, the
link-proxy process and Prometheus, serves the admin/fault API, and expires faults whose
TTL was not renewed. Children die with it (PR_SET_PDEATHSIG), so even a SIGKILLed
supervisor leaves no process behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge
from pydantic import ValidationError

from chaosaa.lab import _runtime
from chaosaa.lab._procfs import process_state
from chaosaa.lab.faults import (
    FAULT_TYPES,
    ROUTER,
    FaultPlan,
    FaultRequest,
    plan,
    resets_connections,
    seconds,
)
from chaosaa.lab.paths import StatePaths, validate_regions
from chaosaa.lab.supervisor.config import Layout
from chaosaa.lab.supervisor.demo import DemoSystem
from chaosaa.lab.supervisor.processes import Processes, _wait_state, watch_owner
from chaosaa.lab.verify import probe_checks, readback_checks

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
READY_TIMEOUT = 60.0


def iso(unix: float) -> str:
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass
class ActiveFault:
    id: str
    request: FaultRequest
    plan: FaultPlan
    ttl: float
    expires_mono: float
    created_unix: float = field(default_factory=time.time)
    condition_ids: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    state: str = "active"
    reverted_unix: float | None = None
    revert_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        remaining = max(0.0, self.expires_mono - time.monotonic())
        return {
            "id": self.id,
            "name": self.request.name,
            "type": self.request.type,
            "state": self.state,
            "spec": self.request.model_dump(exclude_none=True),
            "ttl": self.ttl,
            "createdAt": iso(self.created_unix),
            "expiresAt": iso(time.time() + remaining) if self.state == "active" else None,
            "expiresIn": remaining if self.state == "active" else None,
            "conditions": self.plan.conditions,
            "conditionIds": self.condition_ids,
            "stoppedRegions": self.stopped,
            "revertedAt": iso(self.reverted_unix) if self.reverted_unix else None,
            "revertReason": self.revert_reason,
        }


@dataclass(frozen=True)
class _Surroundings:
    #: (link, condition type) pairs that other active faults act on
    shared: set[tuple[str, str]]
    #: links whose after-revert probe would say nothing about this fault
    unprobeable: set[str]
    #: links another active fault resets (a hang there shows as a reset)
    dropped: set[str]


class FaultApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Supervisor:
    def __init__(
        self,
        paths: StatePaths,
        regions: list[str],
        prometheus_bin: str,
        router_policy: dict[str, Any] | None = None,
        owner_pid: int | None = None,
    ) -> None:
        self.paths = paths
        #: an ephemeral lab belongs to one `chaosaa run`; it shuts down when that dies
        self.owner_pid = owner_pid
        self.regions = regions
        self.prometheus_bin = prometheus_bin
        self.router_policy = router_policy or {}
        self.started_unix = time.time()
        self.phase = "starting"
        self.problems: list[str] = []
        self.faults: dict[str, ActiveFault] = {}
        self.history: list[ActiveFault] = []
        self._stop_refs: dict[str, int] = {}
        self.lease: tuple[str, float] | None = None
        self._shutdown = asyncio.Event()
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.registry = CollectorRegistry()
        self.faults_gauge = Gauge(
            "chaosaa_lab_faults_active",
            "Faults currently applied in the lab",
            ["type"],
            registry=self.registry,
        )
        self.stopped_gauge = Gauge(
            "chaosaa_lab_region_stopped",
            "1 while a region's node process is SIGSTOPped (regionDown)",
            ["region"],
            registry=self.registry,
        )
        self.system = DemoSystem()
        layout = self.layout = Layout(
            paths, regions, self.system, prometheus_bin, self.router_policy
        )
        self.processes = Processes(layout.children)
        self.admin_sock = layout.admin_sock
        self.admin_url = layout.admin_url
        self.router_url = layout.router_url
        self.proxy_url = layout.proxy_url
        self.prometheus_url = layout.prometheus_url
        self.node_urls = layout.node_urls
        self.link_urls = layout.link_urls
        self.link_addresses = layout.link_addresses
        self.link_info = layout.link_info

    async def run(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        runner = await _runtime.serve_app(self.app(), self.admin_sock)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._shutdown.set)
        await self._write_status()
        tasks = []
        try:
            await self.processes.spawn_all()
            self.layout.close_inherited()
            tasks = [
                asyncio.create_task(self._expire_loop()),
                asyncio.create_task(self.processes.watch()),
                asyncio.create_task(self._become_ready()),
            ]
            if self.owner_pid is not None:
                tasks.append(asyncio.create_task(watch_owner(self.owner_pid, self._shutdown)))
            await self._shutdown.wait()
        finally:
            self.phase = "stopping"
            await _runtime.cancel_and_wait(tasks)
            await self._revert_all("lab shutting down")
            await self.processes.stop_all()
            await runner.cleanup()
            await self._session.close()

    async def _become_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            status = await self.status()
            bad = [n for n, c in status["components"].items() if not c["healthy"]]
            if not bad:
                self.phase = "ready"
                self.problems = []
                await self._write_status()
                log.info("lab ready")
                return
            self.problems = [f"{n}: {status['components'][n].get('detail')}" for n in bad]
            await asyncio.sleep(0.2)
        self.phase = "failed"
        await self._write_status()
        log.error("lab did not become ready: %s", "; ".join(self.problems))

    # -- status ----------------------------------------------------------------------
    async def _http_ok(self, url: str, limit: float = 0.5) -> tuple[bool, Any]:
        assert self._session is not None
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=limit)) as r:
                body = await r.read()
                if r.status != 200:
                    return False, f"HTTP {r.status}"
                try:
                    return True, json.loads(body)
                except ValueError:
                    return True, None
        except TimeoutError:
            return False, f"no answer within {limit}s"
        except (aiohttp.ClientError, OSError) as exc:
            return False, f"{type(exc).__name__}: {exc}"

    async def _component(self, name: str, url: str | None) -> dict[str, Any]:
        alive, detail, pid = self.processes.detail(name)
        out: dict[str, Any] = {"healthy": False, "pid": pid, "detail": detail}
        if not alive:
            return out
        assert pid is not None
        state = await asyncio.to_thread(process_state, pid)
        out["stopped"] = state == "T"
        if state == "T":
            out["detail"] = "stopped (SIGSTOP, regionDown)"
            return out
        if url is not None:
            ok, body = await self._http_ok(url)
            out["healthy"] = ok
            out["detail"] = None if ok else body
            if ok and name == "prometheus":
                out.update(await self._prometheus_targets())
        return out

    async def _prometheus_targets(self) -> dict[str, Any]:
        ok, body = await self._http_ok(f"{self.prometheus_url}/api/v1/targets")
        if not ok or not isinstance(body, dict):
            return {"healthy": False, "detail": f"targets API: {body}"}
        targets = body.get("data", {}).get("activeTargets", [])
        down = [t["scrapeUrl"] for t in targets if t.get("health") != "up"]
        expected = self.layout.scrape_targets()
        if len(targets) < expected or down:
            return {
                "healthy": False,
                "detail": f"{len(targets) - len(down)}/{expected} scrape targets up",
            }
        return {"targetsUp": len(targets)}

    async def status(self) -> dict[str, Any]:
        urls = {n: self.layout.children[n].health_url for n in self.layout.components}
        results = await asyncio.gather(*(self._component(n, u) for n, u in urls.items()))
        components = dict(zip(urls, results, strict=True))
        router_view: dict[str, Any] = {}
        ok, body = await self._http_ok(f"{self.router_url}/router/state")
        if ok and isinstance(body, dict):
            router_view = body.get("regions", {})
            components["router"]["serving"] = body.get("serving")
        for r in self.regions:
            c = components[f"node-{r}"]
            c["routerUp"] = router_view.get(r, {}).get("up")
        regions = {
            r: {
                "url": self.link_urls[f"{ROUTER}>{r}"],
                "nodeUrl": self.node_urls[r],
                "healthy": components[f"node-{r}"]["healthy"],
                "stopped": components[f"node-{r}"].get("stopped", False),
                "routerUp": router_view.get(r, {}).get("up"),
                "pid": components[f"node-{r}"]["pid"],
            }
            for r in self.regions
        }
        return {
            **self._static_status(),
            "phase": self.phase,
            "healthy": all(c["healthy"] for c in components.values()),
            "problems": self.problems,
            "regions": regions,
            "components": components,
            "faults": [f.to_json() for f in self.faults.values()],
        }

    def _static_status(self) -> dict[str, Any]:
        return {
            "schemaVersion": 1,
            "pid": os.getpid(),
            "stateDir": str(self.paths.root),
            "startedAt": iso(self.started_unix),
            "supervisor": self.admin_url,
            "router": self.router_url,
            "routerEvents": {
                "path": str(self.paths.events),
                "url": f"{self.router_url}/router/events",
            },
            "prometheus": self.prometheus_url,
            "proxy": {"admin": self.proxy_url},
            "links": self.link_info,
            "logs": str(self.paths.logs),
            "regionNames": self.regions,
        }

    async def _write_status(self) -> None:
        """The status file is how clients find the lab: URLs only, no live health."""
        doc = {
            **self._static_status(),
            "phase": self.phase,
            "problems": self.problems,
            "regions": {
                r: {"url": self.link_urls[f"{ROUTER}>{r}"], "nodeUrl": self.node_urls[r]}
                for r in self.regions
            },
        }
        await asyncio.to_thread(_atomic_write, self.paths.status, json.dumps(doc, indent=2))

    # -- faults ----------------------------------------------------------------------
    async def _proxy(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self._session is not None
        async with self._session.request(method, f"{self.proxy_url}{path}", json=body) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text) if text else None
            except ValueError:
                return r.status, text

    def _node_pid(self, region: str) -> int:
        pid = self.processes.running_pid(self.system.frozen(region)[0])
        if pid is None:
            raise FaultApiError(409, f"node {region} is not running")
        return pid

    async def inject(self, body: dict[str, Any]) -> ActiveFault:
        try:
            req = FaultRequest.model_validate(body)
            fplan = plan(req, self.regions)
        except ValidationError as exc:
            raise FaultApiError(400, _validation_message(exc)) from exc
        except ValueError as exc:
            raise FaultApiError(400, str(exc)) from exc
        async with self._lock:
            fid = req.id or f"f-{uuid.uuid4().hex[:10]}"
            if fid in self.faults:
                raise FaultApiError(409, f"fault {fid!r} is active; renew or delete it")
            ttl = req.ttl_seconds
            fault = ActiveFault(fid, req, fplan, ttl, time.monotonic() + ttl)
            try:
                for i, cond in enumerate(fplan.conditions):
                    cid = f"{fid}.{i}"
                    status, resp = await self._proxy(
                        "POST", "/conditions", {**cond, "id": cid, "ttl": ttl}
                    )
                    if status != 201:
                        raise FaultApiError(502, f"link proxy refused condition: {resp}")
                    fault.condition_ids.append(cid)
                for region in fplan.stop_regions:
                    pid = self._node_pid(region)
                    if self._stop_refs.get(region, 0) == 0:
                        os.kill(pid, signal.SIGSTOP)
                        await _wait_state(pid, stopped=True)
                    self._stop_refs[region] = self._stop_refs.get(region, 0) + 1
                    fault.stopped.append(region)
                    self.stopped_gauge.labels(region).set(1)
            except BaseException:
                await self._undo(fault)
                raise
            self.faults[fid] = fault
            self._update_gauges()
            log.info("fault %s injected: %s", fid, req.model_dump(exclude_none=True))
            return fault

    async def renew(self, fid: str, ttl: float | None) -> ActiveFault:
        async with self._lock:
            fault = self.faults.get(fid)
            if fault is None:
                raise FaultApiError(404, f"no active fault {fid!r} (expired or reverted?)")
            ttl = fault.ttl if ttl is None else ttl
            if not 0 < ttl <= 3600:
                raise FaultApiError(400, "ttl must be > 0 and <= 3600 seconds")
            for cid in fault.condition_ids:
                status, resp = await self._proxy("POST", f"/conditions/{cid}/renew", {"ttl": ttl})
                if status != 200:
                    raise FaultApiError(409, f"condition {cid} could not be renewed: {resp}")
            fault.ttl = ttl
            fault.expires_mono = time.monotonic() + ttl
            return fault

    async def revert(self, fid: str, reason: str) -> ActiveFault:
        async with self._lock:
            fault = self.faults.pop(fid, None)
            if fault is None:
                raise FaultApiError(404, f"no active fault {fid!r} (expired or reverted?)")
            await self._undo(fault)
            fault.state = "reverted"
            fault.reverted_unix = time.time()
            fault.revert_reason = reason
            self.history.append(fault)
            del self.history[:-200]
            self._update_gauges()
            log.info("fault %s reverted (%s)", fid, reason)
            return fault

    async def _undo(self, fault: ActiveFault) -> None:
        for cid in fault.condition_ids:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                await self._proxy("DELETE", f"/conditions/{cid}")  # 404 = already expired
        for region in fault.stopped:
            self._stop_refs[region] -= 1
            if self._stop_refs[region] == 0:
                self.stopped_gauge.labels(region).set(0)
                with contextlib.suppress(FaultApiError, ProcessLookupError):
                    pid = self._node_pid(region)
                    os.kill(pid, signal.SIGCONT)
                    await _wait_state(pid, stopped=False)

    async def _revert_all(self, reason: str) -> list[str]:
        ids = list(self.faults)
        for fid in ids:
            with contextlib.suppress(FaultApiError):
                await self.revert(fid, reason)
        return ids

    async def _expire_loop(self) -> None:
        """Dead-man switch: a fault nobody renews reverts itself at its TTL."""
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            for fid, fault in list(self.faults.items()):
                if fault.expires_mono <= now:
                    with contextlib.suppress(FaultApiError):
                        await self.revert(fid, "ttl expired")

    def _update_gauges(self) -> None:
        for t in FAULT_TYPES:
            self.faults_gauge.labels(t).set(
                sum(1 for f in self.faults.values() if f.request.type == t)
            )

    async def verify(self, fid: str) -> dict[str, Any]:
        """Check that a fault is in place (active) or gone (reverted): the proxy's read-back
        of its conditions, node process states, and probes through the links (see
        :mod:`chaosaa.lab.verify`), gathered concurrently."""
        fault = self.faults.get(fid) or next(
            (f for f in reversed(self.history) if f.id == fid), None
        )
        if fault is None:
            raise FaultApiError(404, f"unknown fault {fid!r}")
        active = fault.state == "active"
        around = self._surroundings(fid)
        conditions, links, process, probes = await asyncio.gather(
            self._proxy_json("/conditions"),
            self._proxy_json("/links"),
            self._process_checks(fault, active),
            probe_checks(
                fault.plan.conditions,
                self.link_addresses,
                active=active,
                skip=around.unprobeable,
                dropped=around.dropped,
            ),
        )
        checks = readback_checks(
            zip(fault.condition_ids, fault.plan.conditions, strict=False),
            {str(c["id"]): c for c in conditions["conditions"]} if conditions else {},
            {str(link["name"]): link["state"] for link in links["links"]} if links else None,
            active=active,
            shared=around.shared,
        )
        if fault.condition_ids and not (conditions and links):
            checks.append({"check": "link proxy answers", "ok": False})
        checks += process + probes
        return {
            "id": fid,
            "state": fault.state,
            "verified": all(c["ok"] for c in checks),
            "checks": checks,
        }

    def _surroundings(self, fid: str) -> _Surroundings:
        """What the other active faults do to the links, so that verifying one fault does
        not mistake another fault's effect for its own."""
        others = [f for f in self.faults.values() if f.id != fid]
        shared = {
            (t["link"], c["type"]) for f in others for c in f.plan.conditions for t in c["targets"]
        }
        stopped = {r for r, n in self._stop_refs.items() if n > 0}
        stopped_links = {link for link in self.link_urls if link.split(">", 1)[1] in stopped}
        dropped = {
            t["link"]
            for f in others
            for c in f.plan.conditions
            if resets_connections(c)
            for t in c["targets"]
        }
        return _Surroundings(shared, {link for link, _ in shared} | stopped_links, dropped)

    async def _proxy_json(self, path: str) -> Any:
        """A proxy admin GET's JSON body, or None if the proxy did not answer it."""
        try:
            status, body = await self._proxy("GET", path)
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None
        return body if status == 200 and isinstance(body, dict) else None

    async def _process_checks(self, fault: ActiveFault, active: bool) -> list[dict[str, Any]]:
        checks = []
        for region in fault.plan.stop_regions:
            pid = self._node_pid(region)
            stopped = await asyncio.to_thread(process_state, pid) == "T"
            checks.append(
                {"check": f"node {region} stopped", "ok": stopped == active, "stopped": stopped}
            )
        return checks

    # -- HTTP API --------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[_errors])
        r = app.router
        r.add_get("/healthz", self._h_health)
        r.add_get("/status", self._h_status)
        r.add_get("/metrics", _runtime.metrics_handler(self.registry))
        r.add_post("/shutdown", self._h_shutdown)
        r.add_get("/lease", self._h_lease_get)
        r.add_post("/lease", self._h_lease_acquire)
        r.add_post("/lease/renew", self._h_lease_acquire)
        r.add_delete("/lease", self._h_lease_release)
        r.add_get("/faults", self._h_list)
        r.add_post("/faults", self._h_inject)
        r.add_delete("/faults", self._h_revert_all)
        r.add_get("/faults/{id}", self._h_get)
        r.add_get("/faults/{id}/verify", self._h_verify)
        r.add_post("/faults/{id}/renew", self._h_renew)
        r.add_delete("/faults/{id}", self._h_revert)
        return app

    async def _h_health(self, _r: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "phase": self.phase})

    # One run per lab at a time: an expiring lease, so a killed runner frees it by itself.
    def _lease_json(self) -> dict[str, Any]:
        if self.lease is None or self.lease[1] <= time.monotonic():
            return {"holder": None}
        return {"holder": self.lease[0], "expiresIn": self.lease[1] - time.monotonic()}

    async def _h_lease_get(self, _r: web.Request) -> web.Response:
        return web.json_response(self._lease_json())

    async def _h_lease_acquire(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        holder, ttl = body.get("holder"), body.get("ttl", 30)
        if not isinstance(holder, str) or not holder:
            raise FaultApiError(400, "holder is required")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= 3600:
            raise FaultApiError(400, "ttl must be seconds, > 0 and <= 3600")
        current = self._lease_json()["holder"]
        if current not in (None, holder):
            raise FaultApiError(
                409, f"the lab is leased by {current!r} (another run is in progress)"
            )
        self.lease = (holder, time.monotonic() + float(ttl))
        return web.json_response(self._lease_json())

    async def _h_lease_release(self, request: web.Request) -> web.Response:
        holder = request.query.get("holder")
        if self._lease_json()["holder"] in (None, holder):
            self.lease = None
        return web.json_response(self._lease_json())

    async def _h_status(self, _r: web.Request) -> web.Response:
        return web.json_response(await self.status())

    async def _h_shutdown(self, _r: web.Request) -> web.Response:
        self._shutdown.set()
        return web.json_response({"stopping": True, "pid": os.getpid()}, status=202)

    async def _h_list(self, request: web.Request) -> web.Response:
        out: dict[str, Any] = {"faults": [f.to_json() for f in self.faults.values()]}
        if request.query.get("history"):
            out["history"] = [f.to_json() for f in self.history]
        return web.json_response(out)

    async def _h_inject(self, request: web.Request) -> web.Response:
        fault = await self.inject(await _json_object(request))
        return web.json_response(fault.to_json(), status=201)

    async def _h_get(self, request: web.Request) -> web.Response:
        fid = request.match_info["id"]
        fault = self.faults.get(fid) or next(
            (f for f in reversed(self.history) if f.id == fid), None
        )
        if fault is None:
            raise FaultApiError(404, f"unknown fault {fid!r}")
        return web.json_response(fault.to_json())

    async def _h_verify(self, request: web.Request) -> web.Response:
        return web.json_response(await self.verify(request.match_info["id"]))

    async def _h_renew(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        ttl = body.get("ttl")
        if ttl is not None:
            try:
                ttl = seconds(ttl)
            except ValueError as exc:
                raise FaultApiError(400, f"ttl: {exc}") from exc
        fault = await self.renew(request.match_info["id"], ttl)
        return web.json_response(fault.to_json())

    async def _h_revert(self, request: web.Request) -> web.Response:
        fault = await self.revert(request.match_info["id"], "deleted via API")
        return web.json_response(fault.to_json())

    async def _h_revert_all(self, _r: web.Request) -> web.Response:
        return web.json_response({"reverted": await self._revert_all("deleted via API")})


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except FaultApiError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)


async def _json_object(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise FaultApiError(400, f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise FaultApiError(400, "body must be a JSON object")
    return body


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description="chaosaa lab supervisor")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--regions", required=True)
    parser.add_argument("--prometheus-bin", required=True)
    parser.add_argument("--router-policy", default="{}", help="JSON HealthPolicy overrides")
    parser.add_argument("--owner-pid", type=int, default=None, help="stop when this pid exits")
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
            json.loads(args.router_policy),
            owner_pid=args.owner_pid,
        )
        asyncio.run(sup.run())
    finally:
        paths.remove_run_state()
        paths.lock.unlink(missing_ok=True)
        os.close(lock_fd)
        log.info("lab stopped")
