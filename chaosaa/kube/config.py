"""Where Kubernetes credentials come from: kubeconfig files and contexts, or in-cluster.

``KUBECONFIG`` is read when a client is loaded, not when the ``kubernetes`` package was
imported (it reads the variable once, at import).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from chaosaa.errors import InvalidInputError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

#: HTTP connections kept per API server: every thread of every pool keeps its own
#: (the client's default is 5 per core)
POOL_SIZE = 32


def kubeconfig_path(kubeconfig: str | None = None) -> str | None:
    """The kubeconfig file to read: the given one, else ``KUBECONFIG``, else the default."""
    return kubeconfig or os.environ.get("KUBECONFIG") or None


def in_cluster() -> bool:
    """Running in a pod with a ServiceAccount and no kubeconfig given."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not os.environ.get("KUBECONFIG")


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> ApiClient:
    """A client for a kubeconfig context (the current one by default) or, inside a pod
    with neither given, for the pod's ServiceAccount."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    conf = k8s.Configuration()
    try:
        if kubeconfig or context or not in_cluster():
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig_path(kubeconfig), context=context, client_configuration=conf
            )
        else:
            k8s_config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError) as exc:
        raise InvalidInputError(f"cannot load Kubernetes credentials: {exc}") from exc
    conf.connection_pool_maxsize = POOL_SIZE
    return k8s.ApiClient(conf)


def context_names(kubeconfig: str | None = None) -> set[str]:
    """The contexts a kubeconfig defines."""
    from kubernetes import config as k8s_config

    try:
        listed = k8s_config.list_kube_config_contexts(kubeconfig_path(kubeconfig))  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError, TypeError) as exc:
        raise InvalidInputError(f"cannot read the kubeconfig: {exc}") from exc
    return {c["name"] for c in listed[0]}


async def clients_for(
    contexts: Iterable[str], kubeconfig: str | None = None
) -> dict[str, ApiClient]:
    """One client per context; every context must be in the kubeconfig."""
    wanted = sorted(set(contexts))

    def load() -> dict[str, ApiClient]:
        known = context_names(kubeconfig)
        missing = [c for c in wanted if c not in known]
        if missing:
            raise InvalidInputError(
                f"context(s) {', '.join(missing)} not in the kubeconfig "
                f"({kubeconfig_path(kubeconfig) or '~/.kube/config'})"
            )
        return {c: load_api_client(kubeconfig_path(kubeconfig), c) for c in wanted}

    return await asyncio.to_thread(load)


def current_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace of a kubeconfig context (the current one by default); ``default``."""
    from kubernetes import config as k8s_config

    try:
        contexts, active = k8s_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig_path(kubeconfig)
        )
        if context:
            active = next((c for c in contexts if c["name"] == context), active)
    except (k8s_config.ConfigException, OSError):
        return "default"
    return str((active or {}).get("context", {}).get("namespace") or "default")
