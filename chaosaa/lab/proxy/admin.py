"""The link proxy's admin HTTP API (docs/lab.md, "Link proxies"); the supervisor's
fault API is its intended client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from chaosaa.lab import _runtime
from chaosaa.lab.proxy.conditions import DIRECTIONS, Condition, ConditionError, Conditions
from chaosaa.lab.proxy.links import Link
from chaosaa.lab.proxy.metrics import ProxyMetrics


class ProxyControl(Protocol):
    """What the admin API drives (``LinkProxy``)."""

    @property
    def links(self) -> Mapping[str, Link]: ...

    @property
    def table(self) -> Conditions: ...

    @property
    def metrics(self) -> ProxyMetrics: ...

    def condition_json(self, cond: Condition) -> dict[str, Any]: ...

    def add_condition(self, body: dict[str, Any]) -> Condition: ...

    def renew(self, cid: str, ttl: float) -> Condition | None: ...

    def remove(self, cid: str) -> Condition | None: ...

    def remove_all(self) -> int: ...


def admin_app(proxy: ProxyControl) -> web.Application:
    return _AdminApi(proxy).app()


class _AdminApi:
    def __init__(self, proxy: ProxyControl) -> None:
        self.proxy = proxy

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/healthz", self._h_health)
        r.add_get("/links", self._h_links)
        r.add_post("/links/{name}/reset", self._h_reset)
        r.add_get("/conditions", self._h_list)
        r.add_post("/conditions", self._h_add)
        r.add_delete("/conditions", self._h_delete_all)
        r.add_get("/conditions/{id}", self._h_get)
        r.add_post("/conditions/{id}/renew", self._h_renew)
        r.add_delete("/conditions/{id}", self._h_delete)
        r.add_get("/metrics", _runtime.metrics_handler(self.proxy.metrics.registry))
        return app

    async def _h_health(self, _r: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "links": len(self.proxy.links)})

    async def _h_links(self, _r: web.Request) -> web.Response:
        out = []
        for name, link in self.proxy.links.items():
            out.append(
                {
                    "name": name,
                    "listen": f"127.0.0.1:{link.listen_port}",
                    "upstream": f"{link.upstream[0]}:{link.upstream[1]}",
                    "activeConnections": len(link.conns),
                    "state": {d: link.state(d).to_json() for d in DIRECTIONS},
                }
            )
        return web.json_response({"links": out})

    async def _h_reset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        link = self.proxy.links.get(name)
        if link is None:
            raise web.HTTPNotFound(text=f"unknown link {name!r}")
        return web.json_response({"link": name, "closed": link.reset_connections()})

    async def _h_list(self, _r: web.Request) -> web.Response:
        live = [self.proxy.condition_json(c) for c in self.proxy.table.all_live()]
        return web.json_response({"conditions": live})

    async def _h_get(self, request: web.Request) -> web.Response:
        cond = self.proxy.table.live(request.match_info["id"])
        if cond is None:
            raise web.HTTPNotFound(text="no such condition")
        return web.json_response(self.proxy.condition_json(cond))

    async def _h_add(self, request: web.Request) -> web.Response:
        body = await _runtime.json_object(request, _bad_request)
        try:
            cond = self.proxy.add_condition(body)
        except ConditionError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.proxy.condition_json(cond), status=201)

    async def _h_renew(self, request: web.Request) -> web.Response:
        body = await _runtime.json_object(request, _bad_request)
        try:
            cond = self.proxy.renew(request.match_info["id"], body.get("ttl"))  # type: ignore[arg-type]
        except ConditionError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if cond is None:
            return web.json_response({"error": "no such condition (expired?)"}, status=404)
        return web.json_response(self.proxy.condition_json(cond))

    async def _h_delete(self, request: web.Request) -> web.Response:
        cond = self.proxy.remove(request.match_info["id"])
        if cond is None:
            return web.json_response({"error": "no such condition"}, status=404)
        return web.json_response({"id": cond.id, "removed": True})

    async def _h_delete_all(self, _r: web.Request) -> web.Response:
        return web.json_response({"removed": self.proxy.remove_all()})


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=message)
