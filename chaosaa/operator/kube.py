"""The few Kubernetes API calls the operator makes, as coroutines.

The ``kubernetes`` client is synchronous: every call goes through a dedicated thread pool,
always with a timeout, so the event loop (kopf's and the engine's) never blocks. Errors
come back as chaosaa errors: :class:`AlreadyExistsError` (the idempotent create of a run
that already fired), :class:`ConflictError` (someone else changed the object first),
:class:`NotFoundError`, and :class:`KubeError` for everything else (temporary).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from chaosaa.errors import EnvironmentError_, InvalidInputError
from chaosaa.spec.crd import GROUP, VERSION

log = logging.getLogger(__name__)

#: seconds per API request
REQUEST_TIMEOUT = 15.0
MERGE_PATCH = "application/merge-patch+json"
#: HTTP connections kept to the apiserver (>= the threads of all Kube instances)
POOL_SIZE = 32


class KubeError(EnvironmentError_):
    """The Kubernetes API failed (temporary: kopf retries)."""

    def __init__(self, message: str, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFoundError(KubeError):
    pass


class AlreadyExistsError(KubeError):
    pass


class ConflictError(KubeError):
    pass


class ForbiddenError(KubeError):
    permanent = True


def _error(exc: ApiException, what: str) -> KubeError:
    reason = ""
    message = str(exc.reason or "")
    try:
        body = json.loads(exc.body or "{}")
        reason = str(body.get("reason") or "")
        message = str(body.get("message") or message)
    except (TypeError, ValueError):
        pass
    text = f"{what}: {message or exc.status}"
    if exc.status == 404:
        return NotFoundError(text, 404, reason)
    if exc.status == 409:
        cls = AlreadyExistsError if reason == "AlreadyExists" else ConflictError
        return cls(text, 409, reason)
    if exc.status == 403:
        return ForbiddenError(text, 403, reason)
    return KubeError(text, exc.status, reason)


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> k8s.ApiClient:
    """An ApiClient from a kubeconfig file (``KUBECONFIG`` by default) or, inside a pod,
    from the ServiceAccount."""
    conf = k8s.Configuration()
    try:
        if kubeconfig or context or not _in_cluster():
            # explicitly: the client reads KUBECONFIG once, when it is imported
            path = kubeconfig or os.environ.get("KUBECONFIG") or None
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=conf
            )
        else:
            k8s_config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as exc:
        raise InvalidInputError(f"cannot load Kubernetes credentials: {exc}") from exc
    # every thread of every pool keeps its connection (the default is 5 per core)
    conf.connection_pool_maxsize = POOL_SIZE
    return k8s.ApiClient(conf)


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not os.environ.get("KUBECONFIG")


class Kube:
    """Async facade over one ApiClient."""

    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        workers: int = 8,
        timeout: float = REQUEST_TIMEOUT,
        owns_api: bool = True,
    ) -> None:
        self.api = api
        self.owns_api = owns_api
        self.timeout = timeout
        self.custom = k8s.CustomObjectsApi(api)
        self.core = k8s.CoreV1Api(api)
        self.coordination = k8s.CoordinationV1Api(api)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.owns_api:
            self.api.close()  # type: ignore[no-untyped-call]

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        call = partial(fn, *args, _request_timeout=self.timeout, **kwargs)
        try:
            return await loop.run_in_executor(self._pool, call)
        except ApiException as exc:
            raise _error(exc, what) from None
        except OSError as exc:  # TimeoutError included
            raise KubeError(f"{what}: {exc}") from exc
        except Exception as exc:  # urllib3 errors: MaxRetryError, ProtocolError, ...
            if type(exc).__module__.startswith("urllib3"):
                raise KubeError(f"{what}: {exc}") from exc
            raise

    # ------------------------------------------------------------------ custom objects

    async def create(self, plural: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        out: dict[str, Any] = await self._call(
            f"create {plural} {namespace}/{name}",
            self.custom.create_namespaced_custom_object,
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
                self.custom.get_namespaced_custom_object,
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
        if namespace:
            result = await self._call(
                f"list {plural} in {namespace}",
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                label_selector=label_selector,
            )
        else:
            result = await self._call(
                f"list {plural}",
                self.custom.list_cluster_custom_object,
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
            self.custom.patch_namespaced_custom_object_status,
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
            self.custom.patch_namespaced_custom_object,
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
                self.custom.delete_namespaced_custom_object,
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
            f"get secret {namespace}/{name}", self.core.read_namespaced_secret, name, namespace
        )
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    async def create_event(self, namespace: str, event: k8s.CoreV1Event) -> None:
        await self._call(
            f"create event in {namespace}", self.core.create_namespaced_event, namespace, event
        )

    # ------------------------------------------------------------------ leases

    async def read_lease(self, namespace: str, name: str) -> k8s.V1Lease | None:
        try:
            lease: k8s.V1Lease = await self._call(
                f"get lease {namespace}/{name}",
                self.coordination.read_namespaced_lease,
                name,
                namespace,
            )
        except NotFoundError:
            return None
        return lease

    async def create_lease(self, namespace: str, lease: k8s.V1Lease) -> k8s.V1Lease:
        out: k8s.V1Lease = await self._call(
            f"create lease in {namespace}",
            self.coordination.create_namespaced_lease,
            namespace,
            lease,
        )
        return out

    async def replace_lease(self, namespace: str, lease: k8s.V1Lease) -> k8s.V1Lease:
        """Replace with the lease's resourceVersion: ConflictError if it changed since."""
        assert lease.metadata is not None
        name = lease.metadata.name
        out: k8s.V1Lease = await self._call(
            f"update lease {namespace}/{name}",
            self.coordination.replace_namespaced_lease,
            name,
            namespace,
            lease,
        )
        return out


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
