"""The ``NetworkFault`` resource: the contract between the runner and the node agent.

A NetworkFault (``chaosaa.io/v1alpha1``, cluster-scoped like the Node it acts on) asks the
agent on ``spec.node`` to apply one :class:`~chaosaa.rules.model.NodeFault`. The runner
creates it and renews ``spec.expiresAt``; the agent applies the rules, adds its finalizer,
reports ``status`` and reverts when the object is deleted or the expiry lapses.

Names, labels and the object layout live here so that the kubernetes target (which writes
them) and the agent and its janitor (which read them) cannot drift apart; the CRD manifest
is in ``chaosaa.agent.crd``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

from chaosaa.rules.model import NodeFault

GROUP = "chaosaa.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "NetworkFault"
PLURAL = "networkfaults"
SINGULAR = "networkfault"
SHORT_NAMES = ("nf",)
#: the agent's finalizer: a deleted NetworkFault disappears only once its rules are gone
FINALIZER = "chaosaa.io/agent"

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "chaosaa"
LABEL_RUN = "chaosaa.io/run-id"
LABEL_FAULT = "chaosaa.io/fault"
LABEL_NODE = "chaosaa.io/node"

# The marks chaosaa leaves on the objects it changes (scaled workloads, cordoned nodes,
# NetworkPolicies), besides LABEL_RUN and LABEL_FAULT: what the janitor reads to undo them.
#: on a workload scaled to 0: its replica count before (revert restores exactly this)
ANN_REPLICAS = "chaosaa.io/replicas-before"
#: the dead-man switch: once this time has passed, the janitor undoes the change
ANN_EXPIRES = "chaosaa.io/expires-at"
#: on a node chaosaa cordoned ("true"); a node cordoned by someone else is never marked
ANN_CORDONED = "chaosaa.io/cordoned"
#: the run that made the change
ANN_RUN = "chaosaa.io/run"

PHASE_PENDING = "Pending"
PHASE_APPLIED = "Applied"
PHASE_REVERTED = "Reverted"
PHASE_FAILED = "Failed"
PHASES = (PHASE_PENDING, PHASE_APPLIED, PHASE_REVERTED, PHASE_FAILED)

#: the heartbeat Lease each agent renews, in the agent namespace
AGENT_NAMESPACE = "chaosaa-system"
AGENT_LEASE_PREFIX = "chaosaa-agent-"

_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_NAME_UNSAFE = re.compile(r"[^a-z0-9-]")


def label_value(text: str) -> str:
    """A valid label value (<= 63 chars, alphanumeric at both ends) naming ``text``."""
    value = _LABEL_UNSAFE.sub("-", text).strip("-_.")
    if len(value) > 63:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        value = value[:54].rstrip("-_.") + "-" + digest
    return value or "x"


def object_name(*parts: str, limit: int = 63) -> str:
    """A DNS-label-safe name from parts, shortened with a hash when too long."""
    raw = "-".join(parts).lower()
    name = re.sub(r"-+", "-", _NAME_UNSAFE.sub("-", raw)).strip("-")
    if len(name) > limit or name != raw:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = name[: limit - 9].rstrip("-") + "-" + digest
    return name


def agent_lease_name(node: str) -> str:
    return object_name(AGENT_LEASE_PREFIX + node, limit=253)


def format_time(ts: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-26T10:00:00.123Z``."""
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_time(text: str) -> float:
    """Unix seconds of an RFC 3339 timestamp (``Z`` or an offset)."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def network_fault(
    fault: NodeFault,
    *,
    node: str,
    run_id: str,
    fault_name: str,
    ttl: float,
    now: float,
    device: str | None = None,
) -> dict[str, Any]:
    """The NetworkFault object asking ``node``'s agent to apply ``fault`` for ``ttl`` s."""
    spec: dict[str, Any] = {
        "node": node,
        "runId": run_id,
        "fault": fault_name,
        **fault.to_spec(),
        "ttlSeconds": ttl,
        "expiresAt": format_time(now + ttl),
    }
    if device:
        spec["device"] = device
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": object_name(fault.key, node, limit=253),
            "labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_RUN: label_value(run_id),
                LABEL_FAULT: label_value(fault_name),
                LABEL_NODE: label_value(node),
            },
        },
        "spec": spec,
    }


def renewal(ttl: float, now: float) -> dict[str, Any]:
    """The merge patch that renews a NetworkFault's dead-man switch."""
    return {"spec": {"ttlSeconds": ttl, "expiresAt": format_time(now + ttl)}}
