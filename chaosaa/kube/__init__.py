"""The one Kubernetes client of chaosaa: the only package that imports ``kubernetes``.

- :mod:`chaosaa.kube.config`: clients from a kubeconfig context, or in-cluster;
- :mod:`chaosaa.kube.client`: :class:`Client`, every call in a thread with a timeout,
  JSON in and out;
- :mod:`chaosaa.kube.errors`: the one error tree (``KubeError`` and its subclasses);
- :mod:`chaosaa.kube.objects`: reading and patching objects as JSON;
- :mod:`chaosaa.kube.janitor`: finding and undoing what chaosaa left on a cluster.

Used by the kubernetes target, the node agent and the operator.
"""

from chaosaa.kube.client import (
    JSON_PATCH,
    MERGE_PATCH,
    METADATA_ONLY,
    REQUEST_TIMEOUT,
    WORKLOAD_KINDS,
    Client,
    Timeout,
)
from chaosaa.kube.config import clients_for, current_namespace, load_api_client
from chaosaa.kube.errors import (
    AlreadyExistsError,
    ApiError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    KubeError,
    NotFoundError,
    UnreachableError,
)
from chaosaa.kube.objects import meta, micro_time, parse_micro_time, selector

__all__ = [
    "JSON_PATCH",
    "MERGE_PATCH",
    "METADATA_ONLY",
    "REQUEST_TIMEOUT",
    "WORKLOAD_KINDS",
    "AlreadyExistsError",
    "ApiError",
    "Client",
    "ConflictError",
    "ForbiddenError",
    "InvalidError",
    "KubeError",
    "NotFoundError",
    "Timeout",
    "UnreachableError",
    "clients_for",
    "current_namespace",
    "load_api_client",
    "meta",
    "micro_time",
    "parse_micro_time",
    "selector",
]
