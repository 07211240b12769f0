"""The supervisor's HTTP API (docs/lab.md, "Supervisor API"): the fault API, the run
lease, status and shutdown."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from chaosaa.lab import _runtime
from chaosaa.lab.faults import seconds
from chaosaa.lab.supervisor.capacity import CapacityControl, CapacityError, parse_capacities
from chaosaa.lab.supervisor.registry import FaultApiError, FaultRegistry
from chaosaa.lab.supervisor.status import Status
from chaosaa.lab.supervisor.verification import Verifier


class Lease:
    """One run per lab at a time: an expiring lease, so a killed runner frees it by itself.
    ``on_end(holder)`` runs when a holder's lease is released or lapses."""

    def __init__(self, on_end: Callable[[str], Awaitable[None]] | None = None) -> None:
        self._lease: tuple[str, float] | None = None
        self._on_end = on_end
        self._timer: asyncio.TimerHandle | None = None
        self._ending: set[asyncio.Task[None]] = set()

    def to_json(self) -> dict[str, Any]:
        if self._lease is None or self._lease[1] <= time.monotonic():
            return {"holder": None}
        return {"holder": self._lease[0], "expiresIn": self._lease[1] - time.monotonic()}

    def acquire(self, holder: object, ttl: object) -> None:
        """Take or renew the lease for ``holder``."""
        if not isinstance(holder, str) or not holder:
            raise FaultApiError(400, "holder is required")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= 3600:
            raise FaultApiError(400, "ttl must be seconds, > 0 and <= 3600")
        current = self.to_json()["holder"]
        if current not in (None, holder):
            raise FaultApiError(
                409, f"the lab is leased by {current!r} (another run is in progress)"
            )
        self._lease = (holder, time.monotonic() + float(ttl))
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(float(ttl), self._lapse)

    def release(self, holder: str | None) -> None:
        """Give the lease up, if ``holder`` has it (or nobody does)."""
        if self.to_json()["holder"] in (None, holder):
            self._end()

    def _lapse(self) -> None:
        if self._lease is not None and self.to_json()["holder"] is None:
            self._end()

    def _end(self) -> None:
        ended, self._lease = self._lease, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if ended is not None and self._on_end is not None:
            task = asyncio.ensure_future(self._on_end(ended[0]))
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)


def supervisor_app(
    faults: FaultRegistry,
    verifier: Verifier,
    status: Status,
    metrics: CollectorRegistry,
    shutdown: asyncio.Event,
    capacity: CapacityControl,
) -> web.Application:
    return _Api(faults, verifier, status, shutdown, capacity).app(metrics)


class _Api:
    def __init__(
        self,
        faults: FaultRegistry,
        verifier: Verifier,
        status: Status,
        shutdown: asyncio.Event,
        capacity: CapacityControl,
    ) -> None:
        self.faults = faults
        self.verifier = verifier
        self.status = status
        self.shutdown = shutdown
        self.capacity = capacity
        self.lease = Lease(on_end=capacity.lease_ended)

    def app(self, metrics: CollectorRegistry) -> web.Application:
        app = web.Application(middlewares=[_errors])
        r = app.router
        r.add_get("/healthz", self._h_health)
        r.add_get("/status", self._h_status)
        r.add_get("/metrics", _runtime.metrics_handler(metrics))
        r.add_post("/shutdown", self._h_shutdown)
        r.add_get("/lease", self._h_lease_get)
        r.add_post("/lease", self._h_lease_acquire)
        r.add_post("/lease/renew", self._h_lease_acquire)
        r.add_delete("/lease", self._h_lease_release)
        r.add_get("/capacity", self._h_capacity_get)
        r.add_put("/capacity", self._h_capacity_put)
        r.add_delete("/capacity", self._h_capacity_reset)
        r.add_get("/faults", self._h_list)
        r.add_post("/faults", self._h_inject)
        r.add_delete("/faults", self._h_revert_all)
        r.add_get("/faults/{id}", self._h_get)
        r.add_get("/faults/{id}/verify", self._h_verify)
        r.add_post("/faults/{id}/renew", self._h_renew)
        r.add_delete("/faults/{id}", self._h_revert)
        return app

    async def _h_health(self, _r: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "phase": self.status.phase})

    async def _h_lease_get(self, _r: web.Request) -> web.Response:
        return web.json_response(self.lease.to_json())

    async def _h_lease_acquire(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        self.lease.acquire(body.get("holder"), body.get("ttl", 30))
        return web.json_response(self.lease.to_json())

    async def _h_lease_release(self, request: web.Request) -> web.Response:
        self.lease.release(request.query.get("holder"))
        return web.json_response(self.lease.to_json())

    async def _h_capacity_get(self, _r: web.Request) -> web.Response:
        return web.json_response(self.capacity.to_json())

    async def _h_capacity_put(self, request: web.Request) -> web.Response:
        """``{"regions": {"us": {...}}, "holder": RUN}``: with a holder, only while that
        run holds the lease (then the lab's own capacity comes back)."""
        body = await _json_object(request)
        holder = body.get("holder")
        if holder is not None and self.lease.to_json()["holder"] != holder:
            raise FaultApiError(409, f"{holder!r} does not hold the lab's lease")
        regions = parse_capacities(body.get("regions"), list(self.capacity.node_urls))
        await self.capacity.set_for(holder, regions)
        if holder is not None and self.lease.to_json()["holder"] != holder:
            await self.capacity.lease_ended(holder)  # it lapsed meanwhile
            raise FaultApiError(409, f"the lease of {holder!r} lapsed")
        return web.json_response(self.capacity.to_json())

    async def _h_capacity_reset(self, _r: web.Request) -> web.Response:
        await self.capacity.apply_own()
        return web.json_response(self.capacity.to_json())

    async def _h_status(self, _r: web.Request) -> web.Response:
        return web.json_response(await self.status.status())

    async def _h_shutdown(self, _r: web.Request) -> web.Response:
        self.shutdown.set()
        return web.json_response({"stopping": True, "pid": os.getpid()}, status=202)

    async def _h_list(self, request: web.Request) -> web.Response:
        out: dict[str, Any] = {"faults": [f.to_json() for f in self.faults.faults.values()]}
        if request.query.get("history"):
            out["history"] = [f.to_json() for f in self.faults.history]
        return web.json_response(out)

    async def _h_inject(self, request: web.Request) -> web.Response:
        fault = await self.faults.inject(await _json_object(request))
        return web.json_response(fault.to_json(), status=201)

    async def _h_get(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.find(request.match_info["id"]).to_json())

    async def _h_verify(self, request: web.Request) -> web.Response:
        return web.json_response(await self.verifier.verify(request.match_info["id"]))

    async def _h_renew(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        ttl = body.get("ttl")
        if ttl is not None:
            try:
                ttl = seconds(ttl)
            except ValueError as exc:
                raise FaultApiError(400, f"ttl: {exc}") from exc
        fault = await self.faults.renew(request.match_info["id"], ttl)
        return web.json_response(fault.to_json())

    async def _h_revert(self, request: web.Request) -> web.Response:
        fault = await self.faults.revert(request.match_info["id"], "deleted via API")
        return web.json_response(fault.to_json())

    async def _h_revert_all(self, _r: web.Request) -> web.Response:
        return web.json_response({"reverted": await self.faults.revert_all("deleted via API")})


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except (FaultApiError, CapacityError) as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)


async def _json_object(request: web.Request) -> dict[str, Any]:
    return await _runtime.json_object(request, lambda message: FaultApiError(400, message))
