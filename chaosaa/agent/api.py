"""The agent's side of the API server: its node's NetworkFaults, their status, its heartbeat.

None of it is on the path of a rule: the watch runs in a thread of its own and posts what
it sees to the agent's loop; status updates are queued and written in the background; the
heartbeat Lease (``chaosaa-agent-<node>``) tells the kubernetes target which nodes run an
agent. The dead-man switch therefore works when the API server cannot be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from chaosaa.errors import ChaosaaError
from chaosaa.kube import ApiError, Client, ConflictError, NotFoundError, micro_time
from chaosaa.rules import resource as nf

log = logging.getLogger(__name__)

#: (connect, read) timeout of the watch request; the server ends it after WATCH_SECONDS
WATCH_SECONDS = 20
WATCH_TIMEOUT = (3.05, WATCH_SECONDS + 5.0)
#: a finalizer update that conflicts is tried again on a fresh read, this often
ATTEMPTS = 5


class NodeApi:
    """What one agent reads from and writes to the API server."""

    def __init__(self, kube: Client, node: str, namespace: str) -> None:
        self.kube = kube
        self.node = node
        #: where the heartbeat Lease lives
        self.namespace = namespace
        self._status_dirty: dict[str, dict[str, Any]] = {}
        self._status_wakeup = asyncio.Event()

    # ------------------------------------------------------------------ watch

    def watch(self, post: Callable[[str, Any], None], stopping: threading.Event) -> None:
        """Thread: list + watch this node's NetworkFaults until ``stopping``; each list is
        posted as ``("SYNC", items)``, each change as ``(type, object)``."""
        list_faults = self.kube.custom.list_cluster_custom_object
        sel = f"{nf.LABEL_NODE}={nf.label_value(self.node)}"
        backoff = 0.2
        while not stopping.is_set():
            try:
                body = self.kube.call_sync(
                    list_faults, nf.GROUP, nf.VERSION, nf.PLURAL, label_selector=sel
                )
                post("SYNC", body.get("items") or [])
                rv = body["metadata"]["resourceVersion"]
                while not stopping.is_set():
                    for event in self.kube.watch(
                        list_faults,
                        nf.GROUP,
                        nf.VERSION,
                        nf.PLURAL,
                        label_selector=sel,
                        resource_version=rv,
                        timeout_seconds=WATCH_SECONDS,
                        _request_timeout=WATCH_TIMEOUT,
                    ):
                        if stopping.is_set():
                            break
                        obj = event.get("raw_object") or {}
                        if event.get("type") == "ERROR":
                            raise RuntimeError(f"watch error: {obj.get('message')}")
                        rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                        if event.get("type") != "BOOKMARK":
                            post(str(event.get("type")), obj)
                    backoff = 0.2
            except Exception as exc:  # any failure: list again after a pause
                if stopping.is_set():
                    return
                log.info("watch of NetworkFaults failed (%s); listing again", exc)
                stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    # ------------------------------------------------------------------ NetworkFaults

    async def set_finalizer(self, name: str, meta: dict[str, Any], present: bool) -> bool:
        """Add or remove the agent's finalizer; False when the object is gone (or going)."""
        custom = self.kube.custom
        current = list(meta.get("finalizers") or [])
        rv = meta.get("resourceVersion")
        for _ in range(ATTEMPTS):
            wanted = [f for f in current if f != nf.FINALIZER]
            if present:
                wanted.append(nf.FINALIZER)
            body = {"metadata": {"finalizers": wanted or None, "resourceVersion": rv}}
            try:
                await self.kube.call(
                    custom.patch_cluster_custom_object, nf.GROUP, nf.VERSION, nf.PLURAL, name, body
                )
                return True
            except NotFoundError:
                return False
            except ConflictError:
                pass  # changed since: read it again
            except ApiError as exc:
                log.warning("NetworkFault %s: finalizer update failed: %s", name, exc)
                return False
            try:
                fresh = await self.kube.call(
                    custom.get_cluster_custom_object, nf.GROUP, nf.VERSION, nf.PLURAL, name
                )
            except ApiError:
                return False
            fmeta = fresh.get("metadata") or {}
            current, rv = list(fmeta.get("finalizers") or []), fmeta.get("resourceVersion")
            if present and fmeta.get("deletionTimestamp"):
                return False
        return False

    def report(self, name: str, status: dict[str, Any]) -> None:
        """Queue a NetworkFault's status; the last one queued per object is written."""
        self._status_dirty[name] = dict(status)
        self._status_wakeup.set()

    async def status_loop(self) -> None:
        while True:
            await self._status_wakeup.wait()
            self._status_wakeup.clear()
            await self.flush_status()

    async def flush_status(self, deadline: float | None = None) -> None:
        """Write the queued statuses (each call within ``deadline`` s: at shutdown)."""
        pending, self._status_dirty = self._status_dirty, {}
        for name, status in pending.items():
            try:
                await self.kube.call(
                    self.kube.custom.patch_cluster_custom_object_status,
                    nf.GROUP,
                    nf.VERSION,
                    nf.PLURAL,
                    name,
                    {"status": status},
                    request_timeout=(deadline, deadline) if deadline else None,
                )
            except NotFoundError:
                pass  # deleted meanwhile: nobody to report to
            except ApiError as exc:
                log.warning("NetworkFault %s: status update failed: %s", name, exc)
            except ChaosaaError as exc:
                log.warning("NetworkFault %s: status update failed: %s", name, exc)
                if deadline is None:
                    self._status_dirty.setdefault(name, status)  # retry later
                    await asyncio.sleep(1.0)
                    self._status_wakeup.set()

    # ------------------------------------------------------------------ heartbeat

    async def heartbeat_loop(self, interval: float) -> None:
        """Renew the heartbeat Lease every ``interval`` s (it lives three times as long)."""
        coord = self.kube.coordination
        name = nf.agent_lease_name(self.node)
        duration = max(1, round(interval * 3))
        warned = 0.0
        while True:
            now = time.time()
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "labels": {
                        nf.LABEL_MANAGED_BY: nf.MANAGED_BY,
                        nf.LABEL_NODE: nf.label_value(self.node),
                    },
                },
                "spec": {
                    "holderIdentity": self.node,
                    "leaseDurationSeconds": duration,
                    "renewTime": micro_time(now),
                },
            }
            try:
                try:
                    await self.kube.call(coord.patch_namespaced_lease, name, self.namespace, body)
                except NotFoundError:
                    await self.kube.call(coord.create_namespaced_lease, self.namespace, body)
            except ChaosaaError as exc:
                if now - warned > 60:
                    warned = now
                    log.warning(
                        "heartbeat Lease %s/%s: %s (the kubernetes target cannot see this "
                        "agent without it)",
                        self.namespace,
                        name,
                        exc,
                    )
            await asyncio.sleep(interval)

    async def drop_heartbeat(self) -> None:
        with contextlib.suppress(ChaosaaError):
            await self.kube.call(
                self.kube.coordination.delete_namespaced_lease,
                nf.agent_lease_name(self.node),
                self.namespace,
                request_timeout=(2.0, 2.0),
            )

    async def api_server_addresses(self) -> tuple[str, ...]:
        """The API server's addresses: the agent must keep reaching it during a fault."""
        host = urlsplit(self.kube.host).hostname or ""
        addrs: set[str] = set()
        if host:
            with contextlib.suppress(OSError):
                infos = await asyncio.to_thread(socket.getaddrinfo, host, None)
                addrs.update(str(i[4][0]) for i in infos)
        with contextlib.suppress(ChaosaaError):
            slices = await self.kube.call(
                self.kube.discovery.list_namespaced_endpoint_slice,
                "default",
                label_selector="kubernetes.io/service-name=kubernetes",
            )
            for item in slices.get("items") or []:
                for endpoint in item.get("endpoints") or []:
                    addrs.update(endpoint.get("addresses") or [])
        return tuple(sorted(a for a in addrs if not a.startswith("127.") and a != "::1"))
