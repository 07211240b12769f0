"""Render the demo's manifests for one region from the templates in ``deploy/manifests/``.

Templates are plain Kubernetes YAML with ``${NAME}`` placeholders, each standing for a
whole scalar. Values are substituted JSON-encoded (a JSON string is a valid YAML scalar),
so a config file or a URL can never break the YAML around it. Every region gets the
namespace and its demo node; the hub also gets the router and Prometheus.

Cross-cluster addresses are the *node IPs* of the other clusters on the shared ``kind``
docker network plus a fixed NodePort, known only once the clusters exist.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chaosaa.errors import InvalidInputError
from chaosaa.kindsetup.topology import (
    APP_PORT,
    CLIENT_NODE_PORT,
    IMAGE,
    METRICS_NODE_PORT,
    NAMESPACE,
    REPLICATION_NODE_PORT,
    Topology,
)

MANIFEST_DIR = Path("deploy") / "manifests"
#: the chart's metrics Service, release chaosaa in chaosaa-system (chaosaa kind operator)
OPERATOR_METRICS = "chaosaa-operator.chaosaa-system.svc.cluster.local:8080"
REGION_TEMPLATES = ("namespace.yaml", "node.yaml")
HUB_TEMPLATES = ("router.yaml", "prometheus.yaml")
DATA_DIR = "/var/lib/chaosaa"
#: the demo node's SQLite directory on its kind node (a hostPath: it outlives the pod)
DATA_HOST_DIR = "/var/lib/chaosaa-demo"
#: the demo containers' user (deploy/Dockerfile), owner of DATA_HOST_DIR
DATA_UID = 10001
SCRAPE_INTERVAL = "1s"
SCRAPE_TIMEOUT = "900ms"


class ManifestError(InvalidInputError):
    """A template under deploy/manifests/ is broken (unknown placeholder, bad YAML)."""


@dataclass(frozen=True)
class Rendered:
    region: str
    documents: list[dict[str, Any]]

    def yaml(self) -> str:
        return yaml.dump_all(self.documents, Dumper=_Dumper, sort_keys=False)

    def objects(self) -> list[tuple[str, str]]:
        return [(d["kind"], d["metadata"]["name"]) for d in self.documents]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (Prometheus config) as literal blocks: readable rendered YAML."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def node_config(topology: Topology, region: str, node_ips: Mapping[str, str]) -> dict[str, Any]:
    """The lab node's config (minus ``fd``): peers push through their replication port."""
    return {
        "region": region,
        "db": f"{DATA_DIR}/{region}.sqlite",
        "peers": {
            other: f"http://{node_ips[other]}:{REPLICATION_NODE_PORT}"
            for other in topology.names
            if other != region
        },
    }


def router_config(topology: Topology, node_ips: Mapping[str, str]) -> dict[str, Any]:
    """The lab router's config (minus ``fd``): every region through its client NodePort."""
    return {
        # Region order is the failover order (eu -> ap -> us, as in the lab).
        "regions": {r: f"http://{node_ips[r]}:{CLIENT_NODE_PORT}" for r in topology.names},
        "eventLog": f"{DATA_DIR}/router-events.jsonl",
        "policy": {},
    }


def prometheus_config(topology: Topology, node_ips: Mapping[str, str]) -> str:
    """Scrape config with the lab's job names, so the lab's PromQL works unchanged."""
    config = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_TIMEOUT,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "scrape_configs": [
            {
                "job_name": "chaosaa-node",
                "honor_labels": True,
                "static_configs": [
                    {"targets": [f"{node_ips[r]}:{METRICS_NODE_PORT}"], "labels": {"region": r}}
                    for r in topology.names
                ],
            },
            {
                "job_name": "chaosaa-router",
                "honor_labels": True,
                "static_configs": [
                    {"targets": [f"chaosaa-router.{NAMESPACE}.svc.cluster.local:{APP_PORT}"]}
                ],
            },
            {
                # `chaosaa kind operator` (the chart in the hub): chaosaa_runs_total,
                # chaosaa_failover_seconds. Down, and harmless, until it is installed.
                "job_name": "chaosaa-operator",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [OPERATOR_METRICS]}],
            },
            {"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090"]}]},
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def data_node(topology: Topology, region: str) -> str:
    """The kind node holding ``region``'s demo data (its first node; the pod is pinned)."""
    return topology.region(region).node_names[0]


def template_values(
    topology: Topology, region: str, node_ips: Mapping[str, str], image: str = IMAGE
) -> dict[str, str]:
    node = json.dumps(node_config(topology, region, node_ips))
    values = {
        "REGION": region,
        "IMAGE": image,
        "NODE_CONFIG": node,
        "NODE_CONFIG_HASH": _hash(node),
        "DATA_NODE": data_node(topology, region),
        "DATA_HOST_DIR": DATA_HOST_DIR,
    }
    if region == topology.hub.region:
        router = json.dumps(router_config(topology, node_ips))
        prom = prometheus_config(topology, node_ips)
        values |= {
            "ROUTER_CONFIG": router,
            "ROUTER_CONFIG_HASH": _hash(router),
            "PROMETHEUS_CONFIG": prom,
            "PROMETHEUS_CONFIG_HASH": _hash(prom),
        }
    return values


def render_template(text: str, values: Mapping[str, str], source: str) -> list[dict[str, Any]]:
    template = string.Template(text)
    names = {m.group("named") or m.group("braced") for m in template.pattern.finditer(text)}
    unknown = sorted(n for n in names if n and n not in values)
    if unknown:
        raise ManifestError(f"{source}: unknown placeholder(s): {', '.join(unknown)}")
    encoded = {k: json.dumps(v) for k, v in values.items()}
    try:
        docs = [d for d in yaml.safe_load_all(template.substitute(encoded)) if d is not None]
    except (yaml.YAMLError, ValueError) as exc:
        raise ManifestError(f"{source}: {exc}") from None
    for doc in docs:
        if not isinstance(doc, dict) or not {"apiVersion", "kind", "metadata"} <= doc.keys():
            raise ManifestError(f"{source}: every document needs apiVersion, kind and metadata")
        ns = doc["metadata"].get("namespace")
        if doc["kind"] != "Namespace" and ns != NAMESPACE:
            raise ManifestError(
                f"{source}: {doc['kind']} {doc['metadata'].get('name')}: "
                f"namespace must be {NAMESPACE}, got {ns!r}"
            )
    return docs


def templates_for(topology: Topology, region: str) -> tuple[str, ...]:
    return REGION_TEMPLATES + (HUB_TEMPLATES if region == topology.hub.region else ())


def render_region(
    root: Path,
    topology: Topology,
    region: str,
    node_ips: Mapping[str, str],
    image: str = IMAGE,
) -> Rendered:
    """Every manifest of ``region``, ready for ``kubectl apply -f``.

    ``node_ips`` maps each region to the IP (on the ``kind`` network) of a node of its
    cluster; any node serves the NodePorts.
    """
    values = template_values(topology, region, node_ips, image)
    docs: list[dict[str, Any]] = []
    for name in templates_for(topology, region):
        path = root / MANIFEST_DIR / name
        try:
            text = path.read_text()
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read: {exc.strerror}") from None
        docs += render_template(text, values, str(path))
    return Rendered(region, docs)
