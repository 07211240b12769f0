"""The lab's status: ``GET /status`` (live health of every component), the status file
``lab.json`` (how clients find the lab: URLs only), and becoming ready."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from chaosaa.lab._procfs import process_state
from chaosaa.lab._runtime import iso
from chaosaa.lab.faults import ROUTER
from chaosaa.lab.supervisor.client import Http
from chaosaa.lab.supervisor.config import Layout
from chaosaa.lab.supervisor.processes import Processes
from chaosaa.lab.supervisor.registry import FaultRegistry

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0


class Status:
    def __init__(
        self, layout: Layout, processes: Processes, registry: FaultRegistry, http: Http
    ) -> None:
        self.layout = layout
        self.processes = processes
        self.registry = registry
        self.http = http
        self.started_unix = time.time()
        self.phase = "starting"
        self.problems: list[str] = []
        #: what the system's own servers are doing while they start (None: started)
        self.system_detail: str | None = None

    async def become_ready(self, prepare: Callable[[], Awaitable[None]] | None = None) -> None:
        """Wait until every component is healthy, ``prepare`` the lab (e.g. its capacity),
        then phase ``ready``; or give up (``failed``)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            status = await self.status()
            bad = [n for n, c in status["components"].items() if not c["healthy"]]
            if not bad:
                if prepare is not None:
                    try:
                        await prepare()
                    except Exception as exc:
                        self.problems = [f"preparing the lab: {exc}"]
                        break
                self.phase = "ready"
                self.problems = []
                await self.write_file()
                log.info("lab ready")
                return
            self.problems = [f"{n}: {status['components'][n].get('detail')}" for n in bad]
            await asyncio.sleep(0.2)
        self.phase = "failed"
        await self.write_file()
        log.error("lab did not become ready: %s", "; ".join(self.problems))

    async def status(self) -> dict[str, Any]:
        layout = self.layout
        urls = {n: layout.children[n].health_url for n in layout.components}
        results = await asyncio.gather(*(self._component(n, u) for n, u in urls.items()))
        components = dict(zip(urls, results, strict=True))
        health = self.layout.system.health()
        if health is not None:
            if self.system_detail is not None:
                health = {"healthy": False, "pid": None, "detail": self.system_detail}
            components[self.layout.system.name] = health
        router_view: dict[str, Any] = {}
        ok, body = await self.http.check(f"{layout.router_url}/router/state")
        if ok and isinstance(body, dict):
            router_view = body.get("regions", {})
            components["router"]["serving"] = body.get("serving")
        regions = {}
        for r in layout.regions:
            c = components[layout.region_process[r]]
            c["routerUp"] = router_view.get(r, {}).get("up")
            regions[r] = {
                "url": layout.link_urls[f"{ROUTER}>{r}"],
                "nodeUrl": layout.node_urls[r],
                "healthy": c["healthy"],
                "stopped": c.get("stopped", False),
                "routerUp": router_view.get(r, {}).get("up"),
                "pid": c["pid"],
            }
        return {
            **self._static(),
            "phase": self.phase,
            "healthy": all(c["healthy"] for c in components.values()),
            "problems": self.problems,
            "regions": regions,
            "components": components,
            "faults": [f.to_json() for f in self.registry.faults.values()],
        }

    async def write_file(self) -> None:
        """The status file is how clients find the lab: URLs only, no live health."""
        layout = self.layout
        doc = {
            **self._static(),
            "phase": self.phase,
            "problems": self.problems,
            "regions": {
                r: {"url": layout.link_urls[f"{ROUTER}>{r}"], "nodeUrl": layout.node_urls[r]}
                for r in layout.regions
            },
        }
        # Only the file (mode 0600) carries the databases' credentials, for the canaries.
        doc["system"] = {**doc["system"], **layout.system.secrets()}
        await asyncio.to_thread(_atomic_write, layout.paths.status, json.dumps(doc, indent=2))

    def _static(self) -> dict[str, Any]:
        layout = self.layout
        return {
            "schemaVersion": 1,
            "pid": os.getpid(),
            "stateDir": str(layout.paths.root),
            "startedAt": iso(self.started_unix),
            "supervisor": layout.admin_url,
            "router": layout.router_url,
            "routerEvents": {
                "path": str(layout.paths.events),
                "url": f"{layout.router_url}/router/events",
            },
            "prometheus": layout.prometheus_url,
            "proxy": {"admin": layout.proxy_url},
            "links": layout.link_info,
            "logs": str(layout.paths.logs),
            "regionNames": layout.regions,
            "system": layout.system.describe(),
        }

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
            ok, body = await self.http.check(url)
            out["healthy"] = ok
            out["detail"] = None if ok else body
            if ok and name == "prometheus":
                out.update(await self._prometheus_targets())
        return out

    async def _prometheus_targets(self) -> dict[str, Any]:
        ok, body = await self.http.check(f"{self.layout.prometheus_url}/api/v1/targets")
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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
