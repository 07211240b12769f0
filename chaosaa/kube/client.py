"""Calling the Kubernetes API from async code: one :class:`Client` per API server.

The ``kubernetes`` package is synchronous. Every call goes through a thread (the loop's
default executor, or a pool of the caller's), always with a request timeout, and comes
back as the JSON body (plain dicts and lists: no model objects to convert) or as an error
of :mod:`chaosaa.kube.errors`. The package is imported when the first client is made, so
that what never calls the API (``chaosaa plan``, ``validate``) does not pay for loading it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from chaosaa.kube.errors import UnreachableError, api_error

if TYPE_CHECKING:
    # the synchronous client a Client wraps (built by chaosaa.kube.config)
    from kubernetes.client import ApiClient as ApiClient

#: (connect, read) seconds, or one number for both
Timeout = float | tuple[float, float]
#: (connect, read) seconds of a call unless the Client or the call says otherwise
REQUEST_TIMEOUT: tuple[float, float] = (3.05, 10.0)

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
#: list objects' metadata only (``PartialObjectMetadataList``), not whole specs and statuses
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
#: the workload kinds chaosaa scales, in the order they are listed
WORKLOAD_KINDS = ("Deployment", "StatefulSet")


@dataclass(frozen=True)
class WorkloadCalls:
    """The API methods of one workload kind (``Deployment`` or ``StatefulSet``)."""

    read: Callable[..., Any]
    patch: Callable[..., Any]
    list: Callable[..., Any]
    list_all: Callable[..., Any]


class Client:
    """One API server: the API groups chaosaa uses, called in threads with timeouts."""

    def __init__(
        self,
        api: ApiClient,
        *,
        timeout: Timeout = REQUEST_TIMEOUT,
        executor: Executor | None = None,
    ) -> None:
        from kubernetes import client as k8s

        self.api = api
        self.timeout = timeout
        #: where calls run; None: the event loop's default executor
        self.executor = executor
        self.core = k8s.CoreV1Api(api)
        self.apps = k8s.AppsV1Api(api)
        self.networking = k8s.NetworkingV1Api(api)
        self.coordination = k8s.CoordinationV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)
        self.discovery = k8s.DiscoveryV1Api(api)

    @property
    def host(self) -> str:
        """The API server's URL."""
        return str(self.api.configuration.host)

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    def workload(self, kind: str) -> WorkloadCalls:
        if kind == "Deployment":
            a = self.apps
            return WorkloadCalls(
                a.read_namespaced_deployment,
                a.patch_namespaced_deployment,
                a.list_namespaced_deployment,
                a.list_deployment_for_all_namespaces,
            )
        if kind == "StatefulSet":
            a = self.apps
            return WorkloadCalls(
                a.read_namespaced_stateful_set,
                a.patch_namespaced_stateful_set,
                a.list_namespaced_stateful_set,
                a.list_stateful_set_for_all_namespaces,
            )
        raise ValueError(f"not a workload kind chaosaa scales: {kind}")

    async def call(
        self,
        fn: Callable[..., Any],
        *args: Any,
        what: str | None = None,
        request_timeout: Timeout | None = None,
        **kwargs: Any,
    ) -> Any:
        """``fn(*args, **kwargs)`` in a thread; its JSON body (None when empty).

        ``what`` names the call in error messages (default: the method's name).
        """
        loop = asyncio.get_running_loop()
        request = partial(
            self.call_sync, fn, *args, what=what, request_timeout=request_timeout, **kwargs
        )
        return await loop.run_in_executor(self.executor, request)

    def call_sync(
        self,
        fn: Callable[..., Any],
        *args: Any,
        what: str | None = None,
        request_timeout: Timeout | None = None,
        **kwargs: Any,
    ) -> Any:
        """:meth:`call` for code that already runs in a thread of its own."""
        from kubernetes.client.exceptions import ApiException

        name = what or str(getattr(fn, "__name__", "kubernetes API call"))
        try:
            resp = fn(
                *args,
                _request_timeout=request_timeout or self.timeout,
                _preload_content=False,
                **kwargs,
            )
            data = resp.data
            return json.loads(data) if data else None
        except ApiException as exc:
            raise api_error(int(exc.status or 0), exc.body, str(exc.reason or ""), name) from None
        except (OSError, ValueError) as exc:  # urllib3's errors are mostly OSErrors
            raise UnreachableError(f"{name}: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            # urllib3.exceptions.HTTPError is not an OSError
            if type(exc).__module__.startswith("urllib3"):
                raise UnreachableError(f"{name}: {exc}") from exc
            raise

    def watch(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Sync, for a thread: the events (``type``, ``raw_object``) of one watch request of
        the list method ``fn``, until the server ends it or the caller stops iterating."""
        from kubernetes import watch

        w = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            yield from w.stream(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
        finally:
            w.stop()  # type: ignore[no-untyped-call]
