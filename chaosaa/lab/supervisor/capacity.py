"""The lab's service capacity per region (``chaosaa.lab.capacity``), as the supervisor
sets it on every region's node.

The lab has a capacity of its own (``chaosaa lab up --capacity``), applied before the lab
reports ready. A run may set another one for its regions (``PUT /capacity`` with its
lease holder, from ``target.lab.capacity`` in a GameDay); it lasts while that run holds
the lab's lease, and the lab's own comes back when the lease is released or lapses, so
a killed run cannot leave a lab undersized.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from chaosaa.lab.capacity import Capacity
from chaosaa.lab.supervisor.client import UNREACHABLE, Http

log = logging.getLogger(__name__)


class CapacityError(Exception):
    """A capacity request is invalid (400) or could not be applied (502)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_capacities(doc: Any, regions: list[str]) -> dict[str, Capacity]:
    """``{"us": {...}, "eu": null}`` -> a Capacity per named region (null: unlimited)."""
    if not isinstance(doc, Mapping):
        raise CapacityError(400, "regions must be an object: region -> capacity")
    unknown = sorted(set(doc) - set(regions))
    if unknown:
        raise CapacityError(
            400, f"unknown region(s) {', '.join(unknown)}; the lab has {', '.join(regions)}"
        )
    out = {}
    for region, body in doc.items():
        try:
            out[region] = Capacity.from_json(body)
        except ValueError as exc:
            raise CapacityError(400, f"{region}: {exc}") from None
    return out


class CapacityControl:
    """What each region's capacity is, who set it, and putting it on the nodes."""

    def __init__(self, node_urls: Mapping[str, str], http: Http, own: Mapping[str, Any]) -> None:
        self.node_urls = dict(node_urls)
        self.http = http
        #: the lab's own capacity (``lab up --capacity``); absent regions are unlimited
        self.own = parse_capacities(own, list(node_urls))
        self.current = {r: self.own.get(r, Capacity()) for r in node_urls}
        #: the run whose capacity is in place (None: the lab's own)
        self.holder: str | None = None
        self._lock = asyncio.Lock()

    def to_json(self) -> dict[str, Any]:
        regions = {r: {**c.to_json(), "describe": c.describe()} for r, c in self.current.items()}
        return {"holder": self.holder, "regions": regions}

    async def apply_own(self) -> None:
        """Put the lab's own capacity on every node (before the lab is ready)."""
        async with self._lock:
            self.holder = None
            await self._put({r: self.own.get(r, Capacity()) for r in self.node_urls})

    async def set_for(self, holder: str | None, regions: Mapping[str, Capacity]) -> None:
        """Set the named regions' capacity (the others get the lab's own) for ``holder``,
        or for good when ``holder`` is None."""
        async with self._lock:
            wanted = {r: regions.get(r, self.own.get(r, Capacity())) for r in self.node_urls}
            await self._put(wanted)
            self.holder = holder

    async def lease_ended(self, holder: str) -> None:
        """The lease of ``holder`` was released or lapsed: its capacity goes."""
        if self.holder != holder:
            return
        log.info("lease of %s ended: the lab's own capacity is back", holder)
        try:
            await self.apply_own()
        except CapacityError as exc:
            log.error("could not put the lab's own capacity back: %s", exc)

    async def _put(self, wanted: Mapping[str, Capacity]) -> None:
        failed = []
        for region, capacity in wanted.items():
            body = {k: v for k, v in capacity.to_json().items() if k != "ceiling"}
            body["serviceTime"] = capacity.service_time
            try:
                status, answer = await self.http.call(
                    "PUT", f"{self.node_urls[region]}/internal/capacity", body
                )
            except UNREACHABLE as exc:
                failed.append(f"{region}: {type(exc).__name__}: {exc}")
                continue
            if status != 200:
                failed.append(f"{region}: HTTP {status}: {answer}")
                continue
            self.current[region] = capacity
        if failed:
            raise CapacityError(502, "capacity not applied to " + "; ".join(failed))
