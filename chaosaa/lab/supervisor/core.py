"""The supervisor: builds the lab's parts and runs it from start to shutdown."""

from __future__ import annotations

import asyncio
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
from chaosaa.lab.supervisor.system import System
from chaosaa.lab.supervisor.verification import Verifier


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
        self.faults = FaultRegistry(regions, system, self.processes, proxy, self.metrics)
        self.verifier = Verifier(self.faults, proxy, self.layout.link_addresses)
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
            await runner.cleanup()
            await self.http.close()
