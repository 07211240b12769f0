"""The Kubernetes API calls the operator makes: its custom objects, Secrets, Events, Leases.

A thin layer over :class:`chaosaa.kube.Client` with a thread pool of its own, so that the
operator's calls never queue behind the engine's (and a second ``Kube`` on the same client
can have yet another pool). Errors are those of :mod:`chaosaa.kube.errors`: e.g.
``AlreadyExistsError`` (the idempotent create of a run that already fired),
``ConflictError`` (someone else changed the object first), ``NotFoundError``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from chaosaa.kube import MERGE_PATCH, Client, NotFoundError
from chaosaa.spec.crd import GROUP, VERSION

if TYPE_CHECKING:
    from chaosaa.kube.client import ApiClient

#: seconds per API request
REQUEST_TIMEOUT = 15.0


class Kube:
    """The operator's async facade over one ApiClient."""

    def __init__(
        self,
        api: ApiClient,
        *,
        workers: int = 8,
        timeout: float = REQUEST_TIMEOUT,
        owns_api: bool = True,
    ) -> None:
        self.api = api
        self.owns_api = owns_api
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        self.client = Client(api, timeout=timeout, executor=self._pool)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.owns_api:
            self.client.close()

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self.client.call(fn, *args, what=what, **kwargs)

    # ------------------------------------------------------------------ custom objects

    async def create(self, plural: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        out: dict[str, Any] = await self._call(
            f"create {plural} {namespace}/{name}",
            self.client.custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            dict(body),
        )
        return out

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            out: dict[str, Any] = await self._call(
                f"get {plural} {namespace}/{name}",
                self.client.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
            )
        except NotFoundError:
            return None
        return out

    async def list(
        self, plural: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        custom = self.client.custom
        if namespace:
            result = await self._call(
                f"list {plural} in {namespace}",
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                label_selector=label_selector,
            )
        else:
            result = await self._call(
                f"list {plural}",
                custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                plural,
                label_selector=label_selector,
            )
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    async def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch the status; with ``resource_version`` it fails with ConflictError
        when the object changed since (optimistic concurrency)."""
        return await self._merge_patch(
            f"patch {plural} {namespace}/{name} status",
            self.client.custom.patch_namespaced_custom_object_status,
            plural,
            namespace,
            name,
            patch,
            resource_version,
        )

    async def patch(
        self,
        plural: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch the object (metadata, spec); with ``resource_version`` as in
        :meth:`patch_status`."""
        return await self._merge_patch(
            f"patch {plural} {namespace}/{name}",
            self.client.custom.patch_namespaced_custom_object,
            plural,
            namespace,
            name,
            patch,
            resource_version,
        )

    async def _merge_patch(
        self,
        what: str,
        method: Any,
        plural: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        resource_version: str | None,
    ) -> dict[str, Any]:
        """One merge patch of a chaosaa object or its status subresource."""
        body = {**patch}
        if resource_version is not None:
            body["metadata"] = {**body.get("metadata", {}), "resourceVersion": resource_version}
        out: dict[str, Any] = await self._call(
            what, method, GROUP, VERSION, namespace, plural, name, body, _content_type=MERGE_PATCH
        )
        return out

    async def delete(self, plural: str, namespace: str, name: str) -> bool:
        """Delete (in the background); False when it was already gone."""
        try:
            await self._call(
                f"delete {plural} {namespace}/{name}",
                self.client.custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                propagation_policy="Background",
            )
        except NotFoundError:
            return False
        return True

    # ------------------------------------------------------------------ core

    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        """A Secret's data, read by name (the operator never lists Secrets)."""
        secret = await self._call(
            f"get secret {namespace}/{name}",
            self.client.core.read_namespaced_secret,
            name,
            namespace,
        )
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        await self._call(
            f"create event in {namespace}",
            self.client.core.create_namespaced_event,
            namespace,
            dict(event),
        )

    # ------------------------------------------------------------------ leases

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            lease: dict[str, Any] = await self._call(
                f"get lease {namespace}/{name}",
                self.client.coordination.read_namespaced_lease,
                name,
                namespace,
            )
        except NotFoundError:
            return None
        return lease

    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = await self._call(
            f"create lease in {namespace}",
            self.client.coordination.create_namespaced_lease,
            namespace,
            dict(lease),
        )
        return out

    async def replace_lease(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        """Replace with the lease's resourceVersion: ConflictError if it changed since."""
        name = lease["metadata"]["name"]
        out: dict[str, Any] = await self._call(
            f"update lease {namespace}/{name}",
            self.client.coordination.replace_namespaced_lease,
            name,
            namespace,
            dict(lease),
        )
        return out
