"""The operator's configuration: flags and ``CHAOSAA_*`` variables, validated once."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from chaosaa.errors import InvalidInputError
from chaosaa.operator.clock import Clock
from chaosaa.targets.base import TargetOptions

ENV_POD_NAMESPACE = "POD_NAMESPACE"
ENV_POD_NAME = "POD_NAME"


@dataclass(frozen=True)
class OperatorConfig:
    # what kopf watches (kopf's own options)
    namespaces: tuple[str, ...] = ()
    clusterwide: bool = False
    standalone: bool = False
    liveness: str | None = None
    peering: str | None = None
    priority: int | None = None
    # the operator's own API access; None: KUBECONFIG, or the ServiceAccount in a pod
    kubeconfig: str | None = None
    context: str | None = None
    # /metrics and /healthz; None: off
    metrics_host: str | None = "127.0.0.1"
    metrics_port: int = 8080
    # one active operator: a Lease in lease_namespace
    lease: bool = True
    lease_name: str = "chaosaa-operator"
    lease_namespace: str | None = None
    lease_duration: float = 15.0
    # what runs' targets get: the flags `chaosaa run` has too (run id and credentials per run)
    targets: TargetOptions = field(default_factory=lambda: TargetOptions(ephemeral=False))
    max_concurrent_runs: int = 20
    api_workers: int = 8
    clock: Clock = field(default_factory=Clock)
    identity: str = ""

    @classmethod
    def build(cls, **values: object) -> OperatorConfig:
        """Check the combination of options and fill in what can be derived."""
        config = cls(**values)  # type: ignore[arg-type]
        if config.clusterwide and config.namespaces:
            raise InvalidInputError("give either --namespace or --all-namespaces, not both")
        if not config.clusterwide and not config.namespaces:
            raise InvalidInputError(
                "give the namespace(s) to watch (-n NS, repeatable) or --all-namespaces"
            )
        if config.max_concurrent_runs < 1:
            raise InvalidInputError("--max-concurrent-runs must be >= 1")
        if config.lease_duration < 2:
            raise InvalidInputError("--lease-duration must be >= 2 seconds")
        identity = config.identity or default_identity()
        lease_namespace = config.lease_namespace
        if config.lease and lease_namespace is None:
            lease_namespace = os.environ.get(ENV_POD_NAMESPACE) or (
                config.namespaces[0]
                if len(config.namespaces) == 1 and not _is_pattern(config.namespaces[0])
                else None
            )
            if lease_namespace is None:
                raise InvalidInputError(
                    "where should the operator's Lease live? give --lease-namespace "
                    f"(or set {ENV_POD_NAMESPACE}), or --no-lease"
                )
        return cls(
            **{
                **config.__dict__,
                "identity": identity,
                "lease_namespace": lease_namespace,
            }
        )

    @property
    def exact_namespaces(self) -> tuple[str, ...]:
        """The watched namespaces that are names, not patterns."""
        return tuple(n for n in self.namespaces if not _is_pattern(n))


def _is_pattern(namespace: str) -> bool:
    return any(c in namespace for c in "*?[!")


def default_identity() -> str:
    """``<pod or host>/<pid>/<random>``: unique per operator process."""
    host = os.environ.get(ENV_POD_NAME) or socket.gethostname()
    return f"{host}/{os.getpid()}/{uuid.uuid4().hex[:6]}"
