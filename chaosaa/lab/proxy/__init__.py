"""Link proxies: userspace TCP proxies on every path that crosses a region boundary.

One process hosts every link of the lab (``router>eu``, ``us>eu``, ...). Each link forwards
one TCP port to one upstream and applies *conditions* set through an admin HTTP API.
Conditions are per link and per stream direction (``up`` = initiator to acceptor, e.g. the
request of a replication push; ``down`` = the reverse), and each has a TTL after which it
disappears by itself, so a fault outlives its injector by at most one TTL.

Condition types and what they do to TCP streams (netem is unavailable, so these are the
userspace equivalents):

- ``blackhole`` ``mode=drop``: existing connections are reset (RST) at once and new ones are
  accepted and reset immediately, like a firewall ``reject``.
- ``blackhole`` ``mode=hang``: nothing is forwarded any more; new connections are accepted
  and held silently, in-flight data is held. Lifting it lets held data through, as TCP
  retransmission would after a real blackhole heals.
- ``latency``: each chunk is delivered ``delay +/- jitter`` after it was read (order kept).
- ``bandwidth``: a token bucket shared by all connections of the link direction.
- ``loss``: a TCP stream cannot lose bytes, so loss is modelled by its effect on TCP: each
  chunk is, with probability ``percent``, held for one retransmission timeout (200 ms,
  doubling on consecutive losses) and each new connection for the initial SYN timeout
  (1 s). ``mode=reset`` instead resets that percentage of new connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from chaosaa.lab import _runtime
from chaosaa.lab.proxy.conditions import (
    CLEAR,
    CONDITION_TYPES,
    DIRECTIONS,
    Condition,
    ConditionError,
    Conditions,
    Direction,
    StreamState,
    parse_condition,
)
from chaosaa.lab.proxy.links import Link
from chaosaa.lab.proxy.metrics import ProxyMetrics
from chaosaa.lab.proxy.shaping import TokenBucket

log = logging.getLogger(__name__)


class LinkProxy:
    """All links of a lab plus their conditions; usable in-process (tests) or as a process."""

    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self.metrics = ProxyMetrics(self.links)
        self.table = Conditions()
        self._reaper: asyncio.Task[None] | None = None

    async def add_link(self, name: str, sock: socket.socket, upstream: tuple[str, int]) -> Link:
        link = Link(self.table, self.metrics, name, sock, upstream)
        await link.start()
        self.links[name] = link
        self.metrics.active.labels(name).set(0)
        return link

    async def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap())

    async def close(self) -> None:
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for link in self.links.values():
            link.reset_connections()
            if link.server:
                link.server.close()
                await link.server.wait_closed()

    # -- conditions ------------------------------------------------------------------
    @property
    def conditions(self) -> dict[str, Condition]:
        """Every condition by id, including expired ones the reaper has not removed yet."""
        return self.table.by_id

    def enforcement(self, cond: Condition) -> list[dict[str, Any]]:
        """Per target link direction: is the condition part of the state every stream
        consults before it forwards a byte, and (drop) has every open connection been cut."""
        out = []
        for name, dirs in sorted(cond.targets.items()):
            link = self.links[name]
            uncut = link.uncut() if cond.resets else 0
            for d in sorted(dirs):
                out.append(
                    {
                        "link": name,
                        "dir": d,
                        "effective": link.state(d).carries(cond),
                        "connections": len(link.conns),
                        "uncut": uncut,
                    }
                )
        return out

    def condition_json(self, cond: Condition) -> dict[str, Any]:
        enforced = self.enforcement(cond)
        return {
            **cond.to_json(time.monotonic()),
            "enforced": enforced,
            "inEffect": all(e["effective"] and e["uncut"] == 0 for e in enforced),
        }

    def add_condition(self, body: dict[str, Any]) -> Condition:
        cond = parse_condition(body, self.links)
        self.table.add(cond)
        self._changed(cond.targets)
        if cond.resets:
            # Existing connections must be cut too, not only new connects.
            for name in cond.targets:
                self.links[name].reset_connections()
        log.info("condition %s added: %s on %s", cond.id, cond.type, sorted(cond.targets))
        return cond

    def renew(self, cid: str, ttl: float) -> Condition | None:
        cond = self.table.renew(cid, ttl)
        if cond is not None:
            self._changed(cond.targets)
        return cond

    def remove(self, cid: str) -> Condition | None:
        cond = self.table.remove(cid)
        if cond is not None:
            self._changed(cond.targets)
            log.info("condition %s removed", cid)
        return cond

    def remove_all(self) -> int:
        ids = list(self.conditions)
        for cid in ids:
            self.remove(cid)
        return len(ids)

    def _changed(self, targets: Iterable[str]) -> None:
        for name in targets:
            self.links[name].notify()
        self._update_gauges()

    def _update_gauges(self) -> None:
        for name in self.links:
            for ctype in CONDITION_TYPES:
                self.metrics.conditions.labels(name, ctype).set(self.table.count(name, ctype))

    async def _reap(self) -> None:
        """Drop expired conditions: the dead-man switch when nobody renews them."""
        while True:
            await asyncio.sleep(0.05)
            for cid in self.table.expired():
                log.info("condition %s expired (TTL)", cid)
                self.remove(cid)

    # -- admin API -------------------------------------------------------------------
    def admin_app(self) -> web.Application:
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
        r.add_get("/metrics", _runtime.metrics_handler(self.metrics.registry))
        return app

    async def _h_health(self, _r: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "links": len(self.links)})

    async def _h_links(self, _r: web.Request) -> web.Response:
        out = []
        for name, link in self.links.items():
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
        link = self.links.get(name)
        if link is None:
            raise web.HTTPNotFound(text=f"unknown link {name!r}")
        return web.json_response({"link": name, "closed": link.reset_connections()})

    async def _h_list(self, _r: web.Request) -> web.Response:
        live = [self.condition_json(c) for c in self.table.all_live()]
        return web.json_response({"conditions": live})

    async def _h_get(self, request: web.Request) -> web.Response:
        cond = self.table.live(request.match_info["id"])
        if cond is None:
            raise web.HTTPNotFound(text="no such condition")
        return web.json_response(self.condition_json(cond))

    async def _h_add(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            cond = self.add_condition(body)
        except ConditionError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.condition_json(cond), status=201)

    async def _h_renew(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            cond = self.renew(request.match_info["id"], body.get("ttl"))  # type: ignore[arg-type]
        except ConditionError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if cond is None:
            return web.json_response({"error": "no such condition (expired?)"}, status=404)
        return web.json_response(self.condition_json(cond))

    async def _h_delete(self, request: web.Request) -> web.Response:
        cond = self.remove(request.match_info["id"])
        if cond is None:
            return web.json_response({"error": "no such condition"}, status=404)
        return web.json_response({"id": cond.id, "removed": True})

    async def _h_delete_all(self, _r: web.Request) -> web.Response:
        return web.json_response({"removed": self.remove_all()})


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


# -- process entry point ------------------------------------------------------------------
async def _amain(config: dict[str, Any]) -> None:
    proxy = LinkProxy()
    await proxy.start()
    for spec in config["links"]:
        sock = _runtime.inherited_socket(int(spec["fd"]))
        await proxy.add_link(spec["name"], sock, (spec["upstreamHost"], int(spec["upstreamPort"])))
    async with _runtime.serving(proxy.admin_app(), int(config["adminFd"])):
        log.info("link proxy up with %d links", len(proxy.links))
        await _runtime.wait_for_shutdown_signal()
        await proxy.close()


def main() -> None:
    config = _runtime.child_config("chaosaa lab link proxies")
    _runtime.setup_logging("proxy")
    asyncio.run(_amain(config))


__all__ = [
    "CLEAR",
    "DIRECTIONS",
    "Condition",
    "ConditionError",
    "Direction",
    "Link",
    "LinkProxy",
    "StreamState",
    "TokenBucket",
    "main",
]
