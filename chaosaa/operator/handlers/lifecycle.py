"""Operator start-up and shutdown, credentials for kopf, liveness."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import kopf

from chaosaa.errors import ChaosaaError
from chaosaa.operator import runs
from chaosaa.operator.metrics import HealthServer
from chaosaa.operator.scheduler import RunIndex

if TYPE_CHECKING:
    from chaosaa.operator.state import Operator

log = logging.getLogger(__name__)


def configure(settings: kopf.OperatorSettings, op: Operator) -> None:
    # Only on.event handlers: kopf keeps no finalizer, progress or diff-base annotations on
    # our objects. The GameDayRun finalizer is the operator's own (gamedayrun.py) and must
    # not be kopf's: kopf removes its finalizer from objects without on.delete handlers.
    # our own Events say what happens; kopf's "Handler succeeded" would double them
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "chaosaa-operator"
    settings.posting.reporting_instance = op.config.identity[:128]
    # every request and watch is bounded
    settings.networking.request_timeout = 60.0
    settings.networking.connect_timeout = 10.0
    settings.watching.server_timeout = 300  # an integer: the apiserver parses it so
    settings.watching.client_timeout = 330.0
    settings.watching.connect_timeout = 10.0
    # exact namespaces need no cluster-wide list/watch of CRDs and namespaces (RBAC)
    settings.scanning.disabled = not op.config.clusterwide and all(
        n in op.config.exact_namespaces for n in op.config.namespaces
    )


async def startup(op: Operator, settings: kopf.OperatorSettings, run_index: RunIndex) -> None:
    configure(settings, op)
    op.scheduler.run_index = run_index
    op.events.start()
    if op.config.metrics_host is not None:
        op.health = HealthServer(op.metrics, op.alive)
        await op.health.start(op.config.metrics_host, op.config.metrics_port)
    if op.lease is not None:
        await op.lease.acquire()
        lease = op.lease
        op.background.append(asyncio.create_task(lease.keep(op.stop_flag.set), name="lease"))
    await sweep(op)
    op.scheduler.start()


async def sweep(op: Operator) -> None:
    """Runs left ``Running`` by an operator that stopped: roll back, mark ``Interrupted``.

    Done before any handler or schedule runs, so that no new run of this operator can
    start on a target while its faults are being cleaned up.
    """
    scopes: list[str | None] = [None] if op.config.clusterwide else list(op.config.exact_namespaces)
    for namespace in scopes:
        try:
            found = await op.kube.list(runs.GAMEDAYRUNS, namespace)
        except ChaosaaError as exc:
            log.warning("start-up sweep of %s skipped: %s", namespace or "all namespaces", exc)
            continue
        for body in found:
            status = body.get("status") or {}
            if status.get("phase") == "Running":
                owner = status.get("operator") or "an earlier operator"
                await op.orphans.recover(body, f"the operator running it ({owner}) stopped mid-run")


async def cleanup(op: Operator) -> None:
    """SIGTERM: stop scheduling, let every run revert its faults, hand the lease over."""
    # kopf's waiter for our stop flag outlives a signal-triggered stop by 5 s otherwise
    op.stop_flag.set()
    await op.scheduler.stop()
    await op.runs.shutdown("the operator was shut down")
    await op.events.stop()
    for task in op.background:
        task.cancel()
    await asyncio.gather(*op.background, return_exceptions=True)
    if op.lease is not None:
        await op.lease.release()
    if op.health is not None:
        await op.health.stop()
    op.fire_kube.close()
    op.kube.close()


def login(op: Operator) -> kopf.ConnectionInfo:
    """kopf uses the operator's own credentials (the same as every other call)."""
    conf = op.kube.api.configuration
    hook = getattr(conf, "refresh_api_key_hook", None)
    if hook is not None:
        hook(conf)  # in a pod: re-read the rotated ServiceAccount token
    header = conf.get_api_key_with_prefix("BearerToken") or conf.get_api_key_with_prefix(
        "authorization"
    )
    scheme, token = None, None
    if header:
        parts = str(header).split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=str(conf.host),
        ca_path=conf.ssl_ca_cert,
        insecure=not conf.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=conf.cert_file,
        private_key_path=conf.key_file,
    )


def probe(op: Operator) -> dict[str, Any]:
    ok, detail = op.alive()
    if not ok:
        raise kopf.TemporaryError(f"not healthy: {detail}")
    return detail
