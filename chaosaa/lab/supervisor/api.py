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
from chaosaa.lab.supervisor.registry import FaultApiError, FaultRegistry
from chaosaa.lab.supervisor.status import Status
from chaosaa.lab.supervisor.verification import Verifier


class Lease:
    """One run per lab at a time: an expiring lease, so a killed runner frees it by itself."""

    def __init__(self) -> None:
        self._lease: tuple[str, float] | None = None

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

    def release(self, holder: str | None) -> None:
        """Give the lease up, if ``holder`` has it (or nobody does)."""
        if self.to_json()["holder"] in (None, holder):
            self._lease = None


def supervisor_app(
    faults: FaultRegistry,
    verifier: Verifier,
    status: Status,
    metrics: CollectorRegistry,
    shutdown: asyncio.Event,
) -> web.Application:
    return _Api(faults, verifier, status, shutdown).app(metrics)


class _Api:
    def __init__(
        self,
        faults: FaultRegistry,
        verifier: Verifier,
        status: Status,
        shutdown: asyncio.Event,
    ) -> None:
        self.faults = faults
        self.verifier = verifier
        self.status = status
        self.shutdown = shutdown
        self.lease = Lease()

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
    except FaultApiError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)


async def _json_object(request: web.Request) -> dict[str, Any]:
    return await _runtime.json_object(request, lambda message: FaultApiError(400, message))
