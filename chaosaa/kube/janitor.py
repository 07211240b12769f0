"""Finding and undoing what chaosaa left on a cluster: the kubernetes-side dead-man switch.

Scaled workloads, cordons and NetworkPolicies carry ``chaosaa.io/expires-at``
(:mod:`chaosaa.rules.resource`); once it has passed, :func:`sweep` undoes them, restoring
each workload's replica count from its own annotation. It runs continuously in
``chaosaa agent --janitor``, at the preflight of the next run on the same contexts (expired
artefacts only), and unconditionally in ``chaosaa rollback``. NetworkFaults are deleted:
their agents revert the node rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chaosaa.kube.client import WORKLOAD_KINDS, Client
from chaosaa.kube.errors import ApiError, NotFoundError
from chaosaa.kube.objects import meta, selector
from chaosaa.rules import resource as nf

log = logging.getLogger(__name__)

#: the labels of everything chaosaa creates or marks
CHAOSAA_MARKED = nf.LABEL_RUN
MANAGED = selector({nf.LABEL_MANAGED_BY: nf.MANAGED_BY})


def expired(annotations: Mapping[str, str] | None, now: float) -> bool:
    """Whether an artefact's ``chaosaa.io/expires-at`` has passed (or is missing)."""
    value = (annotations or {}).get(nf.ANN_EXPIRES)
    if not value:
        return True  # no expiry recorded: treat as a leftover
    try:
        return nf.parse_time(value) < now
    except ValueError:
        return True


async def list_workloads(
    kube: Client, namespaces: Sequence[str] | None, label_selector: str
) -> list[tuple[str, dict[str, Any]]]:
    """(kind, object) of every Deployment and StatefulSet in ``namespaces`` (None: all)."""
    calls: list[tuple[str, Any, tuple[str, ...]]]
    if namespaces is None:
        calls = [(kind, kube.workload(kind).list_all, ()) for kind in WORKLOAD_KINDS]
    else:
        calls = [
            (kind, kube.workload(kind).list, (ns,)) for ns in namespaces for kind in WORKLOAD_KINDS
        ]
    results = await asyncio.gather(
        *(kube.call(fn, *args, label_selector=label_selector) for _, fn, args in calls)
    )
    found: list[tuple[str, dict[str, Any]]] = []
    for (kind, _, _), body in zip(calls, results, strict=True):
        found += [(kind, item) for item in body.get("items") or []]
    return found


async def restore_workload(kube: Client, kind: str, obj: Mapping[str, Any]) -> str | None:
    """Scale a workload chaosaa scaled back to its recorded replicas; drop chaosaa's marks."""
    m = meta(obj)
    ns, name = m["namespace"], m["name"]
    before = (m.get("annotations") or {}).get(nf.ANN_REPLICAS)
    patch: dict[str, Any] = {
        "metadata": {
            "labels": {nf.LABEL_RUN: None, nf.LABEL_FAULT: None},
            "annotations": {nf.ANN_REPLICAS: None, nf.ANN_EXPIRES: None, nf.ANN_RUN: None},
        }
    }
    if before is not None:
        try:
            patch["spec"] = {"replicas": int(before)}
        except ValueError:
            log.warning(
                "%s %s/%s: bad %s=%r; not rescaling", kind, ns, name, nf.ANN_REPLICAS, before
            )
    try:
        await kube.call(kube.workload(kind).patch, name, ns, patch)
    except NotFoundError:
        return None
    return f"{kind} {ns}/{name}: replicas restored to {before}"


async def uncordon(kube: Client, node: Mapping[str, Any]) -> str | None:
    """Lift chaosaa's cordon of a node (only one chaosaa made) and drop chaosaa's marks."""
    m = meta(node)
    ours = (m.get("annotations") or {}).get(nf.ANN_CORDONED) == "true"
    patch: dict[str, Any] = {
        "metadata": {
            "labels": {nf.LABEL_RUN: None, nf.LABEL_FAULT: None},
            "annotations": {nf.ANN_CORDONED: None, nf.ANN_EXPIRES: None, nf.ANN_RUN: None},
        }
    }
    if ours:
        patch["spec"] = {"unschedulable": None}
    try:
        await kube.call(kube.core.patch_node, m["name"], patch)
    except NotFoundError:
        return None
    return f"node {m['name']}: uncordoned" if ours else None


async def list_network_faults(
    kube: Client, label_selector: str | None = None
) -> list[dict[str, Any]]:
    """The NetworkFaults of a cluster (none where the CRD is not installed)."""
    try:
        body = await kube.call(
            kube.custom.list_cluster_custom_object,
            nf.GROUP,
            nf.VERSION,
            nf.PLURAL,
            label_selector=label_selector,
        )
    except NotFoundError:  # the CRD is not installed: nothing of ours can exist
        return []
    return list(body.get("items") or [])


async def sweep(
    kube: Client,
    *,
    namespaces: Sequence[str] | None = None,
    nodes: Sequence[str] | None = None,
    expired_only: bool = True,
    now: float | None = None,
    context: str = "",
) -> list[str]:
    """Undo chaosaa's kubernetes-side artefacts on one cluster; say what was undone.

    With ``expired_only`` (the dead-man switch) only artefacts whose
    ``chaosaa.io/expires-at`` has passed; otherwise everything (``chaosaa rollback``).
    ``namespaces``/``nodes`` restrict the sweep (None: the whole cluster).
    """
    now = time.time() if now is None else now
    where = f" ({context})" if context else ""
    done: list[str] = []
    for kind, obj in await list_workloads(kube, namespaces, CHAOSAA_MARKED):
        due = not expired_only or expired(meta(obj).get("annotations"), now)
        if due and (msg := await restore_workload(kube, kind, obj)):
            done.append(msg + where)
    node_list = await kube.call(kube.core.list_node, label_selector=CHAOSAA_MARKED)
    for node in node_list.get("items") or []:
        if nodes is not None and meta(node)["name"] not in nodes:
            continue
        due = not expired_only or expired(meta(node).get("annotations"), now)
        if due and (msg := await uncordon(kube, node)):
            done.append(msg + where)
    done += [p + where for p in await _sweep_policies(kube, namespaces, expired_only, now)]
    done += [f + where for f in await _sweep_network_faults(kube, nodes, expired_only, now)]
    return done


async def _sweep_policies(
    kube: Client, namespaces: Sequence[str] | None, expired_only: bool, now: float
) -> list[str]:
    net = kube.networking
    if namespaces is None:
        bodies = [
            await kube.call(net.list_network_policy_for_all_namespaces, label_selector=MANAGED)
        ]
    else:
        bodies = await asyncio.gather(
            *(
                kube.call(net.list_namespaced_network_policy, ns, label_selector=MANAGED)
                for ns in namespaces
            )
        )
    done = []
    for body in bodies:
        for pol in body.get("items") or []:
            m = meta(pol)
            if not expired_only or expired(m.get("annotations"), now):
                with contextlib.suppress(ApiError):
                    await kube.call(net.delete_namespaced_network_policy, m["name"], m["namespace"])
                    done.append(f"NetworkPolicy {m['namespace']}/{m['name']} deleted")
    return done


async def _sweep_network_faults(
    kube: Client, nodes: Sequence[str] | None, expired_only: bool, now: float
) -> list[str]:
    done = []
    for item in await list_network_faults(kube):
        m, spec = meta(item), item.get("spec") or {}
        if nodes is not None and spec.get("node") not in nodes:
            continue
        if m.get("deletionTimestamp"):
            continue
        is_expired = True
        with contextlib.suppress(ValueError, TypeError):
            is_expired = nf.parse_time(str(spec.get("expiresAt"))) < now
        if not expired_only or is_expired:
            with contextlib.suppress(ApiError):
                await kube.call(
                    kube.custom.delete_cluster_custom_object,
                    nf.GROUP,
                    nf.VERSION,
                    nf.PLURAL,
                    m["name"],
                )
                done.append(f"NetworkFault {m['name']} (node {spec.get('node')}) deleted")
    return done


async def release_stuck_network_faults(kube: Client, names: Iterable[str]) -> list[str]:
    """Remove the agent finalizer from NetworkFaults whose agent did not answer."""
    custom = kube.custom
    out = []
    for name in names:
        with contextlib.suppress(ApiError):
            obj = await kube.call(
                custom.get_cluster_custom_object, nf.GROUP, nf.VERSION, nf.PLURAL, name
            )
            rest = [f for f in meta(obj).get("finalizers") or [] if f != nf.FINALIZER]
            await kube.call(
                custom.patch_cluster_custom_object,
                nf.GROUP,
                nf.VERSION,
                nf.PLURAL,
                name,
                {"metadata": {"finalizers": rest or None}},
            )
            node = (obj.get("spec") or {}).get("node")
            out.append(
                f"NetworkFault {name}: no agent on node {node} confirmed the revert; finalizer "
                "removed (the agent reverts every chaosaa rule when it starts)"
            )
    return out
