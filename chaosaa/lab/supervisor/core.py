"""The supervisor: builds the lab's parts and runs it from start to shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from prometheus_client import CollectorRegistry

from chaosaa.lab import _runtime
from chaosaa.lab.paths import StatePaths
from chaosaa.lab.supervisor.api import supervisor_app
from chaosaa.lab.supervisor.capacity import CapacityControl
from chaosaa.lab.supervisor.client import Http, ProxyAdmin
from chaosaa.lab.supervisor.config import Layout
from chaosaa.lab.supervisor.processes import Processes, watch_owner
from chaosaa.lab.supervisor.registry import FaultRegistry
from chaosaa.lab.supervisor.status import Status
from chaosaa.lab.supervisor.system import ConflictCollector, System
from chaosaa.lab.supervisor.verification import Verifier

log = logging.getLogger(__name__)

#: how long a system's servers may take to start and replicate (databases under load)
SYSTEM_START_LIMIT = 240.0


class Supervisor:
    def __init__(
        self,
        paths: StatePaths,
        regions: list[str],
        prometheus_bin: str,
        system: System,
        router_policy: dict[str, Any] | None = None,
        owner_pid: int | None = None,
        capacity: dict[str, Any] | None = None,
    ) -> None:
        #: an ephemeral lab belongs to one `chaosaa run`; it shuts down when that dies
        self.owner_pid = owner_pid
        # Synchronous, before the event loop: bind every port, write every config.
        self.layout = Layout(paths, regions, system, prometheus_bin, router_policy or {})
        self.processes = Processes(self.layout.children)
        self.http = Http()
        proxy = ProxyAdmin(self.http, self.layout.proxy_url)
        self.metrics = CollectorRegistry()
        self.metrics.register(ConflictCollector(system))
        self.system = system
        self.faults = FaultRegistry(self.layout, self.processes, proxy, self.metrics)
        self.verifier = Verifier(self.faults, proxy, self.layout)
        self.status = Status(self.layout, self.processes, self.faults, self.http)
        #: region -> capacity document (``lab up --capacity``); checked before anything runs
        self.capacity = CapacityControl(self.layout.node_urls, self.http, capacity or {})
        self._shutdown = asyncio.Event()

    async def run(self) -> None:
        await self.http.open()
        app = supervisor_app(
            self.faults, self.verifier, self.status, self.metrics, self._shutdown, self.capacity
        )
        runner = await _runtime.serve_app(app, self.layout.admin_sock)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._shutdown.set)
        await self.status.write_file()
        tasks = []
        try:
            # The link proxy first: a system's servers dial each other through it.
            await self.processes.spawn(["proxy"])
            if not await self._start_system():
                await self._shutdown.wait()
                return
            await self.processes.spawn_all()
            self.layout.close_inherited()
            tasks = [
                asyncio.create_task(self.faults.expire_loop()),
                asyncio.create_task(self.processes.watch()),
                asyncio.create_task(self.status.become_ready(self.capacity.apply_own)),
            ]
            if self.owner_pid is not None:
                tasks.append(asyncio.create_task(watch_owner(self.owner_pid, self._shutdown)))
            await self._shutdown.wait()
        finally:
            self.status.phase = "stopping"
            await _runtime.cancel_and_wait(tasks)
            await self.faults.revert_all("lab shutting down")
            await self.processes.stop_all()
            await self.system.stop()
            await runner.cleanup()
            await self.http.close()

    async def _start_system(self) -> bool:
        """Start the system's own servers; on failure the lab's phase is ``failed``.

        A shutdown (SIGTERM, ``lab down``) meanwhile cancels the start, which stops what
        already runs. While it starts, the status file is rewritten every half second: it
        names what a killed supervisor would leave behind (data, namespaces)."""
        self.status.system_detail = f"starting {self.system.name}"
        start = asyncio.create_task(
            self.system.start(self.layout.link_addresses, SYSTEM_START_LIMIT)
        )
        stop = asyncio.create_task(self._shutdown.wait())
        try:
            while not start.done() and not stop.done():
                await asyncio.wait({start, stop}, timeout=0.5)
                await self.status.write_file()
        finally:
            if not start.done():
                start.cancel()
            await _runtime.cancel_and_wait([stop])
            await asyncio.gather(start, return_exceptions=True)
        if start.cancelled():
            return False
        exc = start.exception()
        if exc is not None:
            log.error("system %s did not start: %s", self.system.name, exc)
            self.status.system_detail = f"did not start: {exc}"
            self.status.phase = "failed"
            self.status.problems = [f"{self.system.name} did not start: {exc}"]
            await self.status.write_file()
            return False
        self.status.system_detail = None
        return True
