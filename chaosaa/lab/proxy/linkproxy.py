"""The link-proxy service: every link of a lab and the conditions set on them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from chaosaa.lab.proxy.admin import admin_app
from chaosaa.lab.proxy.conditions import CONDITION_TYPES, Condition, Conditions, parse_condition
from chaosaa.lab.proxy.links import Link
from chaosaa.lab.proxy.metrics import ProxyMetrics

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

    def admin_app(self) -> web.Application:
        """The admin HTTP API (see :mod:`chaosaa.lab.proxy.admin`)."""
        return admin_app(self)
