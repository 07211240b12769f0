"""The ``NetworkFault`` CustomResourceDefinition (rendered by ``chaosaa crd render``)."""

from __future__ import annotations

from typing import Any

from chaosaa.rules.model import NODE_FAULT_TYPES
from chaosaa.rules.resource import (
    GROUP,
    KIND,
    PHASES,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
)


def _cidrs(description: str) -> dict[str, Any]:
    return {
        "type": "array",
        "description": description,
        "maxItems": 1024,
        "items": {"type": "string", "maxLength": 64},
    }


def _ports(description: str) -> dict[str, Any]:
    return {
        "type": "array",
        "description": description,
        "maxItems": 64,
        "items": {"type": "integer", "minimum": 1, "maximum": 65535},
    }


def _spec_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "One node-level fault for the chaosaa agent on spec.node.",
        "required": ["node", "key", "type", "ttlSeconds", "expiresAt"],
        "properties": {
            "node": {"type": "string", "description": "the Node whose agent applies the fault"},
            "runId": {"type": "string", "description": "the chaosaa run that created it"},
            "fault": {"type": "string", "description": "the GameDay fault's name"},
            "key": {
                "type": "string",
                "pattern": "^[a-z0-9]{1,16}$",
                "description": "short id naming the fault's nft chains and sets",
            },
            "type": {"type": "string", "enum": list(NODE_FAULT_TYPES)},
            "peers": _cidrs("CIDRs of the far side of the affected links"),
            "everything": {
                "type": "boolean",
                "description": "act on every address outside `local` (clients too)",
            },
            "local": _cidrs("the node's own region; never touched with `everything`"),
            "allow": _cidrs("addresses never touched (e.g. the API server)"),
            "allowPorts": _ports("TCP ports never touched (e.g. metrics)"),
            "direction": {"type": "string", "enum": ["both", "ingress", "egress"]},
            "delaySeconds": {"type": "number", "minimum": 0, "maximum": 60},
            "jitterSeconds": {"type": "number", "minimum": 0, "maximum": 60},
            "rateBits": {"type": "number", "minimum": 8, "description": "bits per second"},
            "percent": {"type": "number", "minimum": 0, "maximum": 100},
            "mode": {"type": "string", "enum": ["throttle", "pause"]},
            "ports": _ports("replication port(s) (replicationLag)"),
            "device": {
                "type": "string",
                "maxLength": 15,
                "description": "network device for tc (default: the route to the peers)",
            },
            "ttlSeconds": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
            "expiresAt": {
                "type": "string",
                "format": "date-time",
                "description": "dead-man switch: renewed by the runner; the agent reverts "
                "within ttlSeconds of the last renewal it saw",
            },
        },
    }


def _status_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "phase": {"type": "string", "enum": list(PHASES)},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "node": {"type": "string"},
            "device": {"type": "string"},
            "slot": {"type": "integer"},
            "appliedAt": {"type": "string", "format": "date-time"},
            "revertedAt": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer"},
        },
    }


def networkfault_crd() -> dict[str, Any]:
    """The NetworkFault CRD manifest (apiextensions.k8s.io/v1), cluster-scoped."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "chaosaa"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["chaosaa"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Node", "type": "string", "jsonPath": ".spec.node"},
                        {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Expires", "type": "string", "jsonPath": ".spec.expiresAt"},
                        {"name": "Run", "type": "string", "jsonPath": ".spec.runId"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A node-level network fault (nft/tc rules) applied "
                            "by the chaosaa agent on one node.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": _spec_schema(),
                                "status": _status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }
