"""The ``kubernetes`` target: regions are kube contexts (and namespaces in them).

Faults and what they leave on the cluster (every artefact names its run and fault in the
labels ``chaosaa.io/run-id`` / ``chaosaa.io/fault`` and carries the dead-man switch
annotation ``chaosaa.io/expires-at``):

- ``regionDown``: every Deployment and StatefulSet in the region's namespaces is scaled to
  0 in one patch that also records ``chaosaa.io/replicas-before``; the region's nodes are
  cordoned (only those that were schedulable; marked ``chaosaa.io/cordoned``). Revert
  restores the exact replicas *from the annotations*, so it works after a crash too.
- ``blackhole``: a deny NetworkPolicy in each targeted namespace (labelled
  ``app.kubernetes.io/managed-by=chaosaa``), plus node rules through the agent where every
  node of the region runs one.
- ``latency``, ``bandwidth``, ``packetLoss``, ``replicationLag``: ``NetworkFault`` objects
  (one per node) that the node agent (``chaosaa agent``) turns into nft/tc rules.

Safety, before anything is touched: every context must be allow-listed
(``--allow-context`` / ``CHAOSAA_ALLOWED_CONTEXTS``) and no targeted namespace or node may
be labelled ``chaosaa.io/protected=true`` (``SafetyError``, exit 2). One run per target at
a time: a ``coordination.k8s.io/v1`` Lease per region context.

Dead-man switch: NetworkFaults revert on their node within TTL + 1 s of the last renewal
(the agent). Scaled workloads, cordons and NetworkPolicies are restored when their expiry
has passed by :func:`sweep` — run continuously by ``chaosaa agent --janitor``, and at the
preflight of the next run on the same contexts — and unconditionally by
``chaosaa rollback``.

Every call of the (synchronous) kubernetes client goes through ``asyncio.to_thread`` with
a ``_request_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from chaosaa.errors import (
    ChaosaaError,
    FaultError,
    InvalidInputError,
    LeaseHeldError,
    SafetyError,
    TargetUnreachableError,
)
from chaosaa.rules import resource as nf
from chaosaa.rules.model import NodeFault, is_always_local, node_faults
from chaosaa.spec.faults import FAULT_TYPES, BlackholeFault, Fault, RegionDownFault
from chaosaa.spec.model import RegionTarget
from chaosaa.targets.base import Applied, AppliedFault, Endpoints, PlannedAction, Target, register

log = logging.getLogger(__name__)

#: (connect, read) seconds for every API call
REQUEST_TIMEOUT: tuple[float, float] = (3.05, 10.0)

ANN_REPLICAS = "chaosaa.io/replicas-before"
ANN_EXPIRES = "chaosaa.io/expires-at"
ANN_CORDONED = "chaosaa.io/cordoned"
ANN_RUN = "chaosaa.io/run"
#: on a Node: extra CIDRs its region's traffic comes from (e.g. NAT gateway addresses)
ANN_ADDRESSES = "chaosaa.io/addresses"
LABEL_PROTECTED = "chaosaa.io/protected"
LABEL_REGION = "topology.kubernetes.io/region"
LEASE_NAME = "chaosaa-gameday"
ENV_REPLICATION_PORTS = "CHAOSAA_REPLICATION_PORTS"
ENV_AGENT_NAMESPACE = "CHAOSAA_NAMESPACE"
NODE_FAULTS = frozenset({"latency", "bandwidth", "packetLoss", "replicationLag"})
WORKLOAD_KINDS = ("Deployment", "StatefulSet")


# --------------------------------------------------------------------------- API calls


def _client_api() -> Any:
    from kubernetes import client

    return client


class ApiError(ChaosaaError):
    """An API call answered with an error status (``status`` is the HTTP code)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


async def kcall(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a sync kubernetes client method in a thread; return its JSON body (dict).

    Raises ApiError for an error status, TargetUnreachableError when the API server
    cannot be reached.
    """
    from kubernetes.client.exceptions import ApiException

    timeout = kwargs.pop("timeout", REQUEST_TIMEOUT)

    def go() -> Any:
        resp = fn(*args, _request_timeout=timeout, _preload_content=False, **kwargs)
        data = resp.data
        return json.loads(data) if data else None

    try:
        return await asyncio.to_thread(go)
    except ApiException as exc:
        reason = exc.reason or ""
        with contextlib.suppress(ValueError, TypeError):
            reason = json.loads(exc.body or "{}").get("message") or reason
        raise ApiError(int(exc.status or 0), str(reason)) from None
    except (OSError, ValueError) as exc:  # urllib3 errors are OSError/ValueError subclasses
        raise TargetUnreachableError(f"kubernetes API: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        # urllib3.exceptions.HTTPError is not an OSError
        if type(exc).__module__.startswith("urllib3"):
            raise TargetUnreachableError(f"kubernetes API: {exc}") from exc
        raise


JSON_PATCH = "application/json-patch+json"
#: list objects' metadata only (what regionDown's poll needs: deletionTimestamp), not the
#: whole pod specs and statuses a large workload would send 20 times a second
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _add_map_entries(
    path: str, current: Mapping[str, str] | None, entries: Mapping[str, str]
) -> list[dict[str, Any]]:
    """JSON-patch ops setting ``entries`` in the map at ``path`` (creating the map)."""
    if current is None:
        return [{"op": "add", "path": path, "value": dict(entries)}]
    return [{"op": "add", "path": f"{path}/{_escape(k)}", "value": v} for k, v in entries.items()]


def _now() -> float:
    return time.time()


def selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def workload_selector(spec_selector: Mapping[str, Any] | None) -> str | None:
    """A label selector string for a workload's ``spec.selector`` (None: selects nothing)."""
    if not spec_selector:
        return None
    parts = [f"{k}={v}" for k, v in (spec_selector.get("matchLabels") or {}).items()]
    for expr in spec_selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or None


def _expired(annotations: Mapping[str, str] | None, now: float) -> bool:
    value = (annotations or {}).get(ANN_EXPIRES)
    if not value:
        return True  # no expiry recorded: treat as a leftover
    try:
        return nf.parse_time(value) < now
    except ValueError:
        return True


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = obj.get("metadata") or {}
    return meta


# --------------------------------------------------------------------------- regions


@dataclass
class Region:
    """One region as reached: its context, namespaces and API client."""

    name: str
    context: str
    namespaces: list[str]
    api: Any
    #: the context serves more than one region: nodes are told apart by region label
    shared: bool = False
    nodes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lease_namespace(self) -> str:
        return self.namespaces[0] if self.namespaces else "default"


def region_addresses(nodes: Iterable[Mapping[str, Any]]) -> list[str]:
    """CIDRs a region's traffic comes from: node addresses, pod CIDRs, annotated extras."""
    out: list[str] = []
    for node in nodes:
        status = node.get("status") or {}
        for addr in status.get("addresses") or []:
            if addr.get("type") in ("InternalIP", "ExternalIP"):
                out.append(addr["address"])
        spec = node.get("spec") or {}
        out += spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
        extra = (_meta(node).get("annotations") or {}).get(ANN_ADDRESSES, "")
        out += [c.strip() for c in extra.split(",") if c.strip()]
    valid = []
    for c in out:
        try:
            net = ipaddress.ip_network(c, strict=False)
        except ValueError:
            log.warning("ignoring %r: not an address or CIDR", c)
            continue
        if not is_always_local(str(net)):
            valid.append(str(net))
    return sorted(set(valid))


def replication_ports() -> tuple[int, ...]:
    raw = os.environ.get(ENV_REPLICATION_PORTS, "")
    try:
        return tuple(int(p) for p in raw.replace(",", " ").split())
    except ValueError:
        raise InvalidInputError(
            f"{ENV_REPLICATION_PORTS}={raw!r}: give TCP ports, e.g. '5432' or '5432,6379'"
        ) from None


def agent_namespace() -> str:
    return os.environ.get(ENV_AGENT_NAMESPACE) or nf.AGENT_NAMESPACE


# --------------------------------------------------------------------------- sweeping


async def _restore_workload(api: Any, kind: str, obj: Mapping[str, Any]) -> str | None:
    """Scale a chaosaa-scaled workload back to its recorded replicas; drop our marks."""
    client = _client_api()
    apps = client.AppsV1Api(api)
    meta = _meta(obj)
    ns, name = meta["namespace"], meta["name"]
    before = (meta.get("annotations") or {}).get(ANN_REPLICAS)
    patch: dict[str, Any] = {
        "metadata": {
            "labels": {nf.LABEL_RUN: None, nf.LABEL_FAULT: None},
            "annotations": {ANN_REPLICAS: None, ANN_EXPIRES: None, ANN_RUN: None},
        }
    }
    if before is not None:
        try:
            patch["spec"] = {"replicas": int(before)}
        except ValueError:
            log.warning("%s %s/%s: bad %s=%r; not rescaling", kind, ns, name, ANN_REPLICAS, before)
    fn = (
        apps.patch_namespaced_deployment
        if kind == "Deployment"
        else apps.patch_namespaced_stateful_set
    )
    try:
        await kcall(fn, name, ns, patch)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return f"{kind} {ns}/{name}: replicas restored to {before}"


async def _uncordon(api: Any, node: Mapping[str, Any]) -> str | None:
    client = _client_api()
    meta = _meta(node)
    ours = (meta.get("annotations") or {}).get(ANN_CORDONED) == "true"
    patch: dict[str, Any] = {
        "metadata": {
            "labels": {nf.LABEL_RUN: None, nf.LABEL_FAULT: None},
            "annotations": {ANN_CORDONED: None, ANN_EXPIRES: None, ANN_RUN: None},
        }
    }
    if ours:
        patch["spec"] = {"unschedulable": None}
    try:
        await kcall(client.CoreV1Api(api).patch_node, meta["name"], patch)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return f"node {meta['name']}: uncordoned" if ours else None


async def _list_workloads(
    api: Any, namespaces: Sequence[str] | None, label_selector: str
) -> list[tuple[str, dict[str, Any]]]:
    client = _client_api()
    apps = client.AppsV1Api(api)
    found: list[tuple[str, dict[str, Any]]] = []
    calls: list[tuple[str, Any, tuple[str, ...]]]
    if namespaces is None:
        calls = [
            ("Deployment", apps.list_deployment_for_all_namespaces, ()),
            ("StatefulSet", apps.list_stateful_set_for_all_namespaces, ()),
        ]
    else:
        calls = []
        for ns in namespaces:
            calls += [
                ("Deployment", apps.list_namespaced_deployment, (ns,)),
                ("StatefulSet", apps.list_namespaced_stateful_set, (ns,)),
            ]
    results = await asyncio.gather(
        *(kcall(fn, *args, label_selector=label_selector) for _, fn, args in calls)
    )
    for (kind, _, _), body in zip(calls, results, strict=True):
        found += [(kind, item) for item in body.get("items") or []]
    return found


async def sweep(
    api: Any,
    *,
    namespaces: Sequence[str] | None = None,
    nodes: Sequence[str] | None = None,
    expired_only: bool = True,
    now: float | None = None,
    context: str = "",
) -> list[str]:
    """Undo chaosaa's kubernetes-side artefacts on one cluster.

    With ``expired_only`` (the dead-man switch) only artefacts whose
    ``chaosaa.io/expires-at`` has passed; otherwise everything (``chaosaa rollback``).
    ``namespaces``/``nodes`` restrict the sweep (None: the whole cluster). Returns what
    was undone. NetworkFaults are deleted (their agents revert the node rules).
    """
    client = _client_api()
    now = _now() if now is None else now
    where = f" ({context})" if context else ""
    done: list[str] = []
    chaos = f"{nf.LABEL_RUN}"
    for kind, obj in await _list_workloads(api, namespaces, chaos):
        due = not expired_only or _expired(_meta(obj).get("annotations"), now)
        if due and (msg := await _restore_workload(api, kind, obj)):
            done.append(msg + where)
    node_list = await kcall(client.CoreV1Api(api).list_node, label_selector=chaos)
    for node in node_list.get("items") or []:
        if nodes is not None and _meta(node)["name"] not in nodes:
            continue
        due = not expired_only or _expired(_meta(node).get("annotations"), now)
        if due and (msg := await _uncordon(api, node)):
            done.append(msg + where)
    net = client.NetworkingV1Api(api)
    managed = selector({nf.LABEL_MANAGED_BY: nf.MANAGED_BY})
    if namespaces is None:
        pol_lists = [
            await kcall(net.list_network_policy_for_all_namespaces, label_selector=managed)
        ]
    else:
        pol_lists = await asyncio.gather(
            *(
                kcall(net.list_namespaced_network_policy, ns, label_selector=managed)
                for ns in namespaces
            )
        )
    for body in pol_lists:
        for pol in body.get("items") or []:
            meta = _meta(pol)
            if not expired_only or _expired(meta.get("annotations"), now):
                with contextlib.suppress(ApiError):
                    await kcall(
                        net.delete_namespaced_network_policy, meta["name"], meta["namespace"]
                    )
                    done.append(f"NetworkPolicy {meta['namespace']}/{meta['name']} deleted{where}")
    done += await _sweep_network_faults(api, nodes, expired_only, now, where)
    return done


async def _sweep_network_faults(
    api: Any, nodes: Sequence[str] | None, expired_only: bool, now: float, where: str
) -> list[str]:
    client = _client_api()
    objs = client.CustomObjectsApi(api)
    try:
        body = await kcall(objs.list_cluster_custom_object, nf.GROUP, nf.VERSION, nf.PLURAL)
    except ApiError as exc:
        if exc.status == 404:  # the CRD is not installed: nothing of ours can exist
            return []
        raise
    done = []
    for item in body.get("items") or []:
        meta, spec = _meta(item), item.get("spec") or {}
        if nodes is not None and spec.get("node") not in nodes:
            continue
        if meta.get("deletionTimestamp"):
            continue
        expires = spec.get("expiresAt")
        expired = True
        with contextlib.suppress(ValueError, TypeError):
            expired = nf.parse_time(str(expires)) < now
        if not expired_only or expired:
            with contextlib.suppress(ApiError):
                await kcall(
                    objs.delete_cluster_custom_object, nf.GROUP, nf.VERSION, nf.PLURAL, meta["name"]
                )
                done.append(f"NetworkFault {meta['name']} (node {spec.get('node')}) deleted{where}")
    return done


async def release_stuck_network_faults(api: Any, names: Iterable[str]) -> list[str]:
    """Remove the agent finalizer from NetworkFaults whose agent did not answer."""
    client = _client_api()
    objs = client.CustomObjectsApi(api)
    out = []
    for name in names:
        with contextlib.suppress(ApiError):
            obj = await kcall(objs.get_cluster_custom_object, nf.GROUP, nf.VERSION, nf.PLURAL, name)
            rest = [f for f in _meta(obj).get("finalizers") or [] if f != nf.FINALIZER]
            await kcall(
                objs.patch_cluster_custom_object,
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


# --------------------------------------------------------------------------- the target


def _describe_policy(fault: BlackholeFault) -> str:
    types = {"both": "ingress+egress", "ingress": "ingress", "egress": "egress"}[fault.direction]
    if fault.regions is not None and fault.cuts_clients:
        return f"NetworkPolicy: deny {types} except within the region's namespaces (and DNS)"
    return f"NetworkPolicy: deny {types} from/to the other side's addresses"


@register
class KubernetesTarget(Target):
    """Any Kubernetes clusters, one kube context per region."""

    kind: ClassVar[str] = "kubernetes"
    handlers = {}
    #: each poll is a handful of API calls per region: 20 polls a second is plenty next
    #: to what the controllers need to act, and leaves the API servers to them
    verify_interval: ClassVar[float] = 0.05

    def __init__(self, spec: Any, options: Any) -> None:
        super().__init__(spec, options)
        self._faults: list[Fault] = []
        self._regions: dict[str, Region] = {}
        self._leases: list[tuple[Region, str]] = []

    # -- pure ----------------------------------------------------------------------
    @property
    def rollback_mode(self) -> bool:
        return bool(self.options.extra.get("rollback"))

    def _region_spec(self, name: str) -> RegionTarget:
        return self.spec.regions[name]

    def check(self, faults: list[Fault]) -> None:
        for f in faults:
            if f.type not in FAULT_TYPES:
                raise InvalidInputError(f"fault {f.name!r}: type {f.type} is not supported")
        for f in faults:
            if (
                isinstance(f, BlackholeFault)
                and f.partition is not None
                and f.direction != "both"
                and len(f.partition) != 2
            ):
                raise InvalidInputError(
                    f"fault {f.name!r}: direction {f.direction} needs exactly two "
                    "partition groups (it is relative to the first)"
                )
            if f.type == "replicationLag":
                replication_ports()  # validates the variable early
        self._faults = list(faults)

    def _fault_regions(self, fault: Fault) -> list[str]:
        """Regions whose namespaces/nodes a fault touches."""
        if isinstance(fault, RegionDownFault):
            return list(fault.regions)
        if isinstance(fault, BlackholeFault):
            if fault.regions is not None:
                return list(fault.regions)
            return [r for g in fault.partition or [] for r in g]
        links: list[list[str]] | None = getattr(fault, "links", None)
        if links:
            return list(dict.fromkeys(a for a, _ in links))
        chosen = set(getattr(fault, "regions", None) or [])
        return [r for r in self.spec.regions if r in chosen] + [
            r for r in self.spec.regions if r not in chosen
        ]

    def plan(self, fault: Fault) -> list[PlannedAction]:
        out: list[PlannedAction] = []
        regions = self._fault_regions(fault)
        for r in regions:
            rs = self._region_spec(r)
            where = f"context {rs.context}"
            if isinstance(fault, RegionDownFault):
                for ns in rs.all_namespaces():
                    out.append(
                        PlannedAction(
                            fault.name,
                            f"namespace {ns}@{rs.context}",
                            "scale every Deployment/StatefulSet to 0 (exact replicas restored)",
                        )
                    )
                out.append(PlannedAction(fault.name, f"nodes of region {r} ({where})", "cordon"))
            elif isinstance(fault, BlackholeFault):
                for ns in rs.all_namespaces():
                    out.append(
                        PlannedAction(
                            fault.name, f"namespace {ns}@{rs.context}", _describe_policy(fault)
                        )
                    )
                out.append(
                    PlannedAction(
                        fault.name,
                        f"nodes of region {r} ({where})",
                        f"nft drop ({fault.direction}) via the chaosaa agent (NetworkFault), "
                        "where every node runs it",
                    )
                )
            else:
                out.append(
                    PlannedAction(
                        fault.name,
                        f"nodes of region {r} ({where})",
                        f"{_node_action(fault)} via the chaosaa agent (NetworkFault)",
                    )
                )
        return out

    # -- preflight ---------------------------------------------------------------------
    def _check_allowlist(self) -> None:
        allowed = set(self.options.allowed_contexts)
        contexts = {r.context for r in self.spec.regions.values() if r.context}
        refused = sorted(contexts - allowed)
        if refused:
            raise SafetyError(
                f"context(s) {', '.join(refused)} not allowed: chaosaa touches only "
                "allow-listed contexts; add --allow-context "
                + " --allow-context ".join(refused)
                + " (or CHAOSAA_ALLOWED_CONTEXTS) if you mean it"
            )

    async def _clients(self) -> dict[str, Any]:
        from kubernetes import config

        # KUBECONFIG is read now, not when the kubernetes package was imported
        config_file = self.options.kubeconfig or os.environ.get("KUBECONFIG") or None
        contexts = sorted({r.context for r in self.spec.regions.values() if r.context})

        def load() -> dict[str, Any]:
            try:
                listed = config.list_kube_config_contexts(config_file)  # type: ignore[no-untyped-call]
                known = {c["name"] for c in listed[0]}
            except (config.ConfigException, OSError, TypeError) as exc:
                raise InvalidInputError(f"cannot read the kubeconfig: {exc}") from exc
            missing = [c for c in contexts if c not in known]
            if missing:
                raise InvalidInputError(
                    f"context(s) {', '.join(missing)} not in the kubeconfig "
                    f"({config_file or os.environ.get('KUBECONFIG') or '~/.kube/config'})"
                )
            return {
                c: config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=config_file, context=c
                )
                for c in contexts
            }

        return await asyncio.to_thread(load)

    async def open(self) -> Endpoints:
        self._check_allowlist()
        clients = await self._clients()
        users: dict[str, int] = {}
        for r in self.spec.regions.values():
            users[str(r.context)] = users.get(str(r.context), 0) + 1
        self._regions = {
            name: Region(
                name=name,
                context=str(r.context),
                namespaces=r.all_namespaces(),
                api=clients[str(r.context)],
                shared=users[str(r.context)] > 1,
            )
            for name, r in self.spec.regions.items()
        }
        if not self.rollback_mode:
            await self._check_blast_radius()
        return Endpoints(
            entry_url=self.spec.url,
            regions={n: r.endpoint for n, r in self.spec.regions.items() if r.endpoint},
        )

    async def _check_blast_radius(self) -> None:
        """Refuse protected namespaces and nodes, before anything is touched."""
        client = _client_api()
        problems: list[str] = []
        missing: list[str] = []

        async def check_ns(region: Region, ns: str) -> None:
            try:
                obj = await kcall(client.CoreV1Api(region.api).read_namespace, ns)
            except ApiError as exc:
                if exc.status == 404:
                    missing.append(f"namespace {ns} does not exist in context {region.context}")
                    return
                raise TargetUnreachableError(f"context {region.context}: {exc}") from exc
            if (_meta(obj).get("labels") or {}).get(LABEL_PROTECTED) == "true":
                problems.append(
                    f"namespace {ns} in context {region.context} is labelled {LABEL_PROTECTED}=true"
                )

        await asyncio.gather(
            *(check_ns(r, ns) for r in self._regions.values() for ns in r.namespaces)
        )
        # every region's nodes: their addresses place node rules, and the preflight sweep
        # of expired leftovers covers them; only touched ones must not be protected
        await asyncio.gather(*(self._load_nodes(r) for r in self._regions.values()))
        node_regions = {r for f in self._faults for r in self._fault_regions(f)}
        needs_nodes = [r for r in self._regions.values() if r.name in node_regions]
        for region in needs_nodes:
            for node in region.nodes:
                if (_meta(node).get("labels") or {}).get(LABEL_PROTECTED) == "true":
                    problems.append(
                        f"node {_meta(node)['name']} of region {region.name} is labelled "
                        f"{LABEL_PROTECTED}=true"
                    )
        if problems:
            raise SafetyError(
                "refusing to touch protected resources (nothing was changed): "
                + "; ".join(sorted(problems))
            )
        if missing:
            raise InvalidInputError("; ".join(sorted(missing)))

    async def _load_nodes(self, region: Region) -> list[dict[str, Any]]:
        client = _client_api()
        kwargs = {"label_selector": f"{LABEL_REGION}={region.name}"} if region.shared else {}
        body = await kcall(client.CoreV1Api(region.api).list_node, **kwargs)
        region.nodes = list(body.get("items") or [])
        return region.nodes

    def _region(self, name: str) -> Region:
        try:
            return self._regions[name]
        except KeyError:
            raise TargetUnreachableError("kubernetes target is not open") from None

    # -- lease -------------------------------------------------------------------------
    def _lease_sites(self) -> list[Region]:
        seen: dict[tuple[str, str], Region] = {}
        for name in sorted(self._regions):
            r = self._regions[name]
            seen.setdefault((r.context, r.lease_namespace), r)
        return list(seen.values())

    async def acquire_lease(self, holder: str, ttl: float) -> None:
        taken: list[tuple[Region, str]] = []
        try:
            for region in self._lease_sites():
                await self._take_lease(region, holder, ttl)
                taken.append((region, holder))
        except BaseException:
            for region, h in taken:
                with contextlib.suppress(Exception):
                    await self._drop_lease(region, h)
            raise
        self._leases = taken
        # The dead-man switch for a run that died: its expired leftovers go now.
        for line in await self._sweep_expired():
            log.warning("restored leftover of an earlier run: %s", line)

    async def _sweep_expired(self) -> list[str]:
        by_context: dict[str, list[Region]] = {}
        for r in self._regions.values():
            by_context.setdefault(r.context, []).append(r)
        out: list[str] = []
        for ctx, regions in by_context.items():
            namespaces = sorted({ns for r in regions for ns in r.namespaces})
            nodes = sorted({_meta(n)["name"] for r in regions for n in r.nodes})
            out += await sweep(
                regions[0].api,
                namespaces=namespaces,
                nodes=nodes,
                expired_only=True,
                context=ctx,
            )
        return out

    async def _take_lease(self, region: Region, holder: str, ttl: float) -> None:
        client = _client_api()
        coord = client.CoordinationV1Api(region.api)
        ns = region.lease_namespace
        now = _now()
        spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": max(1, round(ttl)),
            "renewTime": micro_time(now),
        }
        for _ in range(3):
            try:
                current = await kcall(coord.read_namespaced_lease, LEASE_NAME, ns)
            except ApiError as exc:
                if exc.status != 404:
                    raise TargetUnreachableError(f"lease in {region.context}: {exc}") from exc
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": LEASE_NAME,
                        "labels": {nf.LABEL_MANAGED_BY: nf.MANAGED_BY},
                    },
                    "spec": {**spec, "acquireTime": micro_time(now), "leaseTransitions": 0},
                }
                try:
                    await kcall(coord.create_namespaced_lease, ns, body)
                    return
                except ApiError as exc2:
                    if exc2.status == 409:
                        continue  # someone created it just now: look again
                    raise TargetUnreachableError(f"lease in {region.context}: {exc2}") from exc2
            cur_spec = current.get("spec") or {}
            other = cur_spec.get("holderIdentity")
            renewed = parse_micro_time(cur_spec.get("renewTime"))
            duration = float(cur_spec.get("leaseDurationSeconds") or 0)
            expires = (renewed or 0.0) + duration
            if other and other != holder and expires > now:
                raise LeaseHeldError(
                    f"target is busy: run {other!r} holds the lease {ns}/{LEASE_NAME} in "
                    f"context {region.context} (renewed {now - (renewed or now):.0f}s ago, "
                    f"expires in {expires - now:.0f}s unless renewed). Wait for that run to "
                    "finish; if it died, its lease expires by itself."
                )
            patch_spec = dict(spec)
            if other != holder:
                patch_spec["acquireTime"] = micro_time(now)
                patch_spec["leaseTransitions"] = int(cur_spec.get("leaseTransitions") or 0) + 1
            patch = {
                "metadata": {"resourceVersion": _meta(current)["resourceVersion"]},
                "spec": patch_spec,
            }
            try:
                await kcall(coord.patch_namespaced_lease, LEASE_NAME, ns, patch)
                return
            except ApiError as exc:
                if exc.status == 409:
                    continue  # changed under us: decide again on the new state
                raise TargetUnreachableError(f"lease in {region.context}: {exc}") from exc
        raise LeaseHeldError(
            f"could not take the lease {ns}/{LEASE_NAME} in context {region.context}: "
            "it keeps changing (another run is starting)"
        )

    async def _drop_lease(self, region: Region, holder: str) -> None:
        client = _client_api()
        coord = client.CoordinationV1Api(region.api)
        ns = region.lease_namespace
        try:
            current = await kcall(coord.read_namespaced_lease, LEASE_NAME, ns)
        except ApiError:
            return
        if (current.get("spec") or {}).get("holderIdentity") != holder:
            return
        with contextlib.suppress(ApiError):
            await kcall(
                coord.delete_namespaced_lease,
                LEASE_NAME,
                ns,
                body={"preconditions": {"resourceVersion": _meta(current)["resourceVersion"]}},
            )

    async def renew_lease(self, holder: str, ttl: float) -> None:
        for region, _ in self._leases:
            await self._take_lease(region, holder, ttl)

    async def release_lease(self, holder: str) -> None:
        leases, self._leases = self._leases, []
        for region, h in leases:
            with contextlib.suppress(Exception):
                await self._drop_lease(region, h)

    # -- faults ------------------------------------------------------------------------
    def _labels(self, fault: Fault) -> dict[str, str]:
        return {
            nf.LABEL_RUN: nf.label_value(self.options.run_id),
            nf.LABEL_FAULT: nf.label_value(fault.name),
        }

    async def inject(self, fault: Fault, ttl: float) -> Applied:
        """Inject; if cancelled midway (SIGTERM) or failing, undo it before re-raising.

        API calls run in threads and cannot be called back once sent, so a cancelled
        injection is completed and reverted rather than abandoned half-done.
        """
        work = asyncio.ensure_future(self._inject(fault, ttl))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            await asyncio.shield(self._undo_cancelled(work, fault))
            raise
        except ChaosaaError:
            # a half-done injection: whatever was created carries our labels
            await asyncio.shield(self._undo_cancelled(work, fault))
            raise

    async def _undo_cancelled(self, work: asyncio.Future[Applied], fault: Fault) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(work), timeout=30)
        try:
            applied = work.result() if work.done() and not work.exception() else None
        except asyncio.CancelledError:
            applied = None
        applied = applied or AppliedFault(fault, nf.label_value(fault.name), {})
        try:
            await self.revert(applied)
        except ChaosaaError as exc:
            log.error("fault %s: revert after an interrupted injection failed: %s", fault.name, exc)

    async def _inject(self, fault: Fault, ttl: float) -> Applied:
        applied: Applied = AppliedFault(fault, nf.label_value(fault.name), {})
        if isinstance(fault, RegionDownFault):
            await self._scale_down(applied, ttl)
        elif isinstance(fault, BlackholeFault):
            await self._create_policies(applied, ttl)
            await self._create_network_faults(applied, ttl, optional=True)
        else:
            await self._create_network_faults(applied, ttl, optional=False)
        return applied

    async def verify_effect(self, applied: Applied) -> bool:
        applied.pending = []
        checks = []
        if applied.state.get("workloads") or applied.state.get("nodes"):
            checks.append(self._scaled_down(applied))
        if applied.state.get("policies"):
            checks.append(self._policies_present(applied))
        if applied.state.get("networkFaults"):
            checks.append(self._network_faults_applied(applied))
        results = await asyncio.gather(*checks)
        return all(results)

    async def renew(self, applied: Applied, ttl: float) -> None:
        expires = nf.format_time(_now() + ttl)
        tasks = []
        client = _client_api()
        for region, kind, ns, name in applied.state.get("workloads", []):
            apps = client.AppsV1Api(self._region(region).api)
            fn = (
                apps.patch_namespaced_deployment
                if kind == "Deployment"
                else apps.patch_namespaced_stateful_set
            )
            tasks.append(kcall(fn, name, ns, {"metadata": {"annotations": {ANN_EXPIRES: expires}}}))
        for region, name in applied.state.get("nodes", []):
            core = client.CoreV1Api(self._region(region).api)
            body = {"metadata": {"annotations": {ANN_EXPIRES: expires}}}
            tasks.append(kcall(core.patch_node, name, body))
        for region, ns, name in applied.state.get("policies", []):
            net = client.NetworkingV1Api(self._region(region).api)
            body = {"metadata": {"annotations": {ANN_EXPIRES: expires}}}
            tasks.append(kcall(net.patch_namespaced_network_policy, name, ns, body))
        tasks.append(self._renew_network_faults(applied, ttl))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise FaultError(f"fault {applied.fault.name!r}: renewal failed: {errors[0]}")

    async def revert(self, applied: Applied) -> None:
        fault = applied.fault
        regions = [self._region(r) for r in self._fault_regions(fault)]
        labels = selector(self._labels(fault))
        errors: list[str] = []

        async def guarded(coro: Any) -> None:
            try:
                await coro
            except ChaosaaError as exc:
                errors.append(str(exc))

        tasks = []
        if isinstance(fault, RegionDownFault):
            tasks += [guarded(self._restore_region(r, labels)) for r in regions]
        if isinstance(fault, BlackholeFault):
            tasks += [guarded(self._delete_policies(r, labels)) for r in regions]
        tasks += [
            guarded(self._delete_network_faults(r, labels)) for r in self._contexts().values()
        ]
        await asyncio.gather(*tasks)
        if errors:
            raise FaultError(f"fault {fault.name!r}: revert failed: {'; '.join(errors)}")

    async def verify_reverted(self, applied: Applied) -> bool:
        applied.pending = []
        fault = applied.fault
        labels = selector(self._labels(fault))
        client = _client_api()
        checks: list[Any] = []
        for r in [self._region(r) for r in self._fault_regions(fault)]:
            if isinstance(fault, RegionDownFault):
                checks.append(_list_workloads(r.api, r.namespaces, labels))
                checks.append(kcall(client.CoreV1Api(r.api).list_node, label_selector=labels))
            if isinstance(fault, BlackholeFault):
                net = client.NetworkingV1Api(r.api)
                for ns in r.namespaces:
                    checks.append(
                        kcall(net.list_namespaced_network_policy, ns, label_selector=labels)
                    )
        if applied.state.get("networkFaults"):
            for region in self._contexts().values():
                checks.append(self._list_network_faults(region, labels))
        results = await asyncio.gather(*checks)
        for res in results:
            items = res if isinstance(res, list) else (res or {}).get("items") or []
            for item in items:  # (kind, object) pairs from _list_workloads, or objects
                kind, obj = item if isinstance(item, tuple) else ("object", item)
                applied.pending.append(f"{kind} {_meta(obj).get('name')}: still marked")
        if applied.pending:
            return False
        # the exact replicas are back (read from the objects themselves)
        for region, kind, ns, name in applied.state.get("workloads", []):
            want = applied.state["replicas"][f"{region}/{kind}/{ns}/{name}"]
            obj = await self._read_workload(region, kind, ns, name)
            have = (obj or {}).get("spec", {}).get("replicas")
            if obj is not None and have != want:
                applied.pending.append(f"{region}/{kind}/{ns}/{name}: {have} of {want} replicas")
                return False
        return True

    async def rollback(self) -> list[str]:
        if not self._regions:
            await self.open()
        out: list[str] = []
        for ctx, region in self._contexts().items():
            # everything of chaosaa's in the allow-listed context, not only the GameDay's
            # namespaces: the big red button must also find what a renamed GameDay left
            out += await sweep(region.api, expired_only=False, context=ctx)
            out += await self._await_agents(region)
            out += await self._drop_leases(region)
        return out

    # -- regionDown --------------------------------------------------------------------
    async def _scale_down(self, applied: Applied, ttl: float) -> None:
        fault = applied.fault
        assert isinstance(fault, RegionDownFault)
        expires = nf.format_time(_now() + ttl)
        labels = self._labels(fault)
        workloads: list[tuple[str, str, str, str]] = []
        replicas: dict[str, int] = {}
        nodes: list[tuple[str, str]] = []
        selectors: dict[str, str | None] = {}
        applied.state.update(
            workloads=workloads, replicas=replicas, nodes=nodes, selectors=selectors
        )

        async def one_region(name: str) -> None:
            region = self._region(name)
            found = await _list_workloads(region.api, region.namespaces, "")
            scaled = await asyncio.gather(
                *(self._scale_one(region, kind, obj, labels, expires) for kind, obj in found)
            )
            specs = {(_meta(o)["namespace"], _meta(o)["name"], k): o.get("spec") for k, o in found}
            for item in scaled:
                if item is not None:
                    kind, ns, wname, before = item
                    workloads.append((name, kind, ns, wname))
                    key = f"{name}/{kind}/{ns}/{wname}"
                    replicas[key] = before
                    spec = specs.get((ns, wname, kind)) or {}
                    selectors[key] = workload_selector(spec.get("selector"))
            if not region.nodes:
                await self._load_nodes(region)
            cordoned = await asyncio.gather(
                *(self._cordon_one(region, node, labels, expires) for node in region.nodes)
            )
            nodes.extend((name, n) for n in cordoned if n is not None)

        await asyncio.gather(*(one_region(r) for r in fault.regions))

    async def _scale_one(
        self,
        region: Region,
        kind: str,
        obj: Mapping[str, Any],
        labels: Mapping[str, str],
        expires: str,
    ) -> tuple[str, str, str, int] | None:
        client = _client_api()
        apps = client.AppsV1Api(region.api)
        meta = _meta(obj)
        ns, name = meta["namespace"], meta["name"]
        fn = (
            apps.patch_namespaced_deployment
            if kind == "Deployment"
            else apps.patch_namespaced_stateful_set
        )
        for _ in range(5):
            annotations = meta.get("annotations") or {}
            replicas = (obj.get("spec") or {}).get("replicas")
            if replicas is None:
                return None  # not a scalable workload spec
            # An earlier, crashed run's record is the true original: keep it.
            before = int(annotations.get(ANN_REPLICAS, replicas))
            if before == 0:
                return None
            marks = {ANN_REPLICAS: str(before), ANN_EXPIRES: expires, ANN_RUN: self.options.run_id}
            # A JSON patch whose `test` guards the replica count we read: status updates
            # by the controllers (which change resourceVersion all the time) do not
            # conflict, a concurrent scale does.
            patch = [
                {"op": "test", "path": "/spec/replicas", "value": replicas},
                *_add_map_entries("/metadata/labels", meta.get("labels"), labels),
                *_add_map_entries("/metadata/annotations", meta.get("annotations"), marks),
                {"op": "replace", "path": "/spec/replicas", "value": 0},
            ]
            try:
                await kcall(fn, name, ns, patch, _content_type=JSON_PATCH)
                return kind, ns, name, before
            except ApiError as exc:
                if exc.status == 404:
                    return None
                if exc.status not in (409, 422):
                    raise FaultError(f"{kind} {ns}/{name} in {region.context}: {exc}") from exc
            fresh = await self._read_workload(region.name, kind, ns, name)
            if fresh is None:
                return None
            obj, meta = fresh, _meta(fresh)
        raise FaultError(f"{kind} {ns}/{name}: kept changing while being scaled down")

    async def _read_workload(
        self, region: str, kind: str, ns: str, name: str
    ) -> dict[str, Any] | None:
        client = _client_api()
        apps = client.AppsV1Api(self._region(region).api)
        fn = (
            apps.read_namespaced_deployment
            if kind == "Deployment"
            else apps.read_namespaced_stateful_set
        )
        try:
            obj: dict[str, Any] = await kcall(fn, name, ns)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    async def _cordon_one(
        self, region: Region, node: Mapping[str, Any], labels: Mapping[str, str], expires: str
    ) -> str | None:
        client = _client_api()
        core = client.CoreV1Api(region.api)
        meta = _meta(node)
        for _ in range(5):
            spec = node.get("spec") or {}
            if spec.get("unschedulable"):
                return None  # cordoned by someone else: not ours to uncordon
            marks = {ANN_CORDONED: "true", ANN_EXPIRES: expires, ANN_RUN: self.options.run_id}
            # guarded like the scale-down; kwok/kubelet heartbeats must not conflict
            guard = (
                [{"op": "test", "path": "/spec/unschedulable", "value": False}]
                if "unschedulable" in spec
                else []
            )
            patch = [
                *guard,
                *_add_map_entries("/metadata/labels", meta.get("labels"), labels),
                *_add_map_entries("/metadata/annotations", meta.get("annotations"), marks),
                {"op": "add", "path": "/spec/unschedulable", "value": True},
            ]
            try:
                await kcall(core.patch_node, meta["name"], patch, _content_type=JSON_PATCH)
                return str(meta["name"])
            except ApiError as exc:
                if exc.status == 404:
                    return None
                if exc.status not in (409, 422):
                    raise FaultError(f"node {meta['name']}: cordon failed: {exc}") from exc
            node = await kcall(core.read_node, meta["name"])
            meta = _meta(node)
        raise FaultError(f"node {meta['name']}: kept changing while being cordoned")

    async def _scaled_down(self, applied: Applied) -> bool:
        """No pod of any scaled workload still serving; nodes cordoned (read back).

        A pod being deleted counts as down: it left the Service endpoints the moment its
        deletion began, and its kubelet may take up to terminationGracePeriodSeconds to
        remove it. What has been seen done stays done (replicas are 0, nobody
        uncordons), so each poll only asks about the rest.
        """
        client = _client_api()
        done: set[str] = applied.state.setdefault("verified", set())

        async def workload_down(region: str, kind: str, ns: str, name: str) -> None:
            key = f"{region}/{kind}/{ns}/{name}"
            sel = applied.state["selectors"].get(key)
            if sel is not None:
                core = client.CoreV1Api(self._region(region).api)
                pods = await kcall(
                    core.list_namespaced_pod, ns, label_selector=sel, _headers=METADATA_ONLY
                )
                serving = [
                    p for p in pods.get("items") or [] if not _meta(p).get("deletionTimestamp")
                ]
                if serving:
                    hint = (
                        " (an OrderedReady StatefulSet may not scale down while its "
                        "pods are not Ready)"
                        if kind == "StatefulSet"
                        else ""
                    )
                    applied.pending.append(f"{key}: {len(serving)} pod(s) not being deleted{hint}")
                    return
            done.add(key)

        async def cordoned(region: str, name: str) -> None:
            core = client.CoreV1Api(self._region(region).api)
            node = await kcall(core.read_node, name)
            if (node.get("spec") or {}).get("unschedulable"):
                done.add(f"{region}/node/{name}")
            else:
                applied.pending.append(f"{region}/node/{name}: not cordoned")

        await asyncio.gather(
            *(
                workload_down(*w)
                for w in applied.state.get("workloads", [])
                if "/".join(w) not in done
            ),
            *(
                cordoned(*n)
                for n in applied.state.get("nodes", [])
                if f"{n[0]}/node/{n[1]}" not in done
            ),
        )
        wanted = len(applied.state.get("workloads", [])) + len(applied.state.get("nodes", []))
        return len(done) >= wanted

    async def _restore_region(self, region: Region, labels: str) -> None:
        client = _client_api()
        found, nodes = await asyncio.gather(
            _list_workloads(region.api, region.namespaces, labels),
            kcall(client.CoreV1Api(region.api).list_node, label_selector=labels),
        )
        await asyncio.gather(
            *(_restore_workload(region.api, kind, obj) for kind, obj in found),
            *(_uncordon(region.api, node) for node in nodes.get("items") or []),
        )

    # -- blackhole: NetworkPolicies ----------------------------------------------------
    async def _addresses(self) -> dict[str, list[str]]:
        missing = [r for r in self._regions.values() if not r.nodes]
        await asyncio.gather(*(self._load_nodes(r) for r in missing))
        return {name: region_addresses(r.nodes) for name, r in self._regions.items()}

    def _policy(
        self, fault: BlackholeFault, region: Region, ns: str, far: Sequence[str], expires: str
    ) -> dict[str, Any]:
        types = {"both": ["Ingress", "Egress"], "ingress": ["Ingress"], "egress": ["Egress"]}[
            fault.direction
        ]
        spec: dict[str, Any] = {"podSelector": {}, "policyTypes": types}
        if fault.regions is not None and fault.cuts_clients:
            # Dark region: its namespaces still talk among themselves (and to DNS).
            peers = [
                {
                    "namespaceSelector": {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/metadata.name",
                                "operator": "In",
                                "values": list(region.namespaces),
                            }
                        ]
                    }
                }
            ]
            spec["ingress"] = [{"from": peers}]
            dns = {
                "to": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                        }
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }
            spec["egress"] = [{"to": peers}, dns]
        else:
            v4 = [c for c in far if ":" not in c]
            v6 = [c for c in far if ":" in c]
            blocks: list[dict[str, Any]] = [{"namespaceSelector": {}}]
            blocks.append(
                {"ipBlock": {"cidr": "0.0.0.0/0", "except": v4}}
                if v4
                else {"ipBlock": {"cidr": "0.0.0.0/0"}}
            )
            blocks.append(
                {"ipBlock": {"cidr": "::/0", "except": v6}} if v6 else {"ipBlock": {"cidr": "::/0"}}
            )
            spec["ingress"] = [{"from": blocks}]
            spec["egress"] = [{"to": blocks}]
        if "Ingress" not in types:
            spec.pop("ingress")
        if "Egress" not in types:
            spec.pop("egress")
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": nf.object_name("chaosaa", fault.name, nf.label_value(self.options.run_id)),
                "namespace": ns,
                "labels": {nf.LABEL_MANAGED_BY: nf.MANAGED_BY, **self._labels(fault)},
                "annotations": {ANN_EXPIRES: expires, ANN_RUN: self.options.run_id},
            },
            "spec": spec,
        }

    async def _create_policies(self, applied: Applied, ttl: float) -> None:
        fault = applied.fault
        assert isinstance(fault, BlackholeFault)
        expires = nf.format_time(_now() + ttl)
        client = _client_api()
        far_by_region: dict[str, list[str]] = {}
        if not (fault.regions is not None and fault.cuts_clients):
            addrs = await self._addresses()
            groups = (
                [[r] for r in fault.regions] if fault.regions is not None else fault.partition or []
            )
            for gi, group in enumerate(groups):
                others = (
                    [r for r in self._regions if r not in group]
                    if fault.regions is not None
                    else [r for gj, g in enumerate(groups) if gj != gi for r in g]
                )
                far = sorted({c for o in others for c in addrs[o]})
                for r in group:
                    mine = set(addrs[r])
                    far_by_region[r] = [c for c in far if c not in mine]
                    if not far_by_region[r] and self._region(r).namespaces:
                        raise FaultError(
                            f"fault {fault.name!r}: no addresses known for the regions region "
                            f"{r} must be cut from; NetworkPolicy needs them (node InternalIPs, "
                            f"pod CIDRs, or the node annotation {ANN_ADDRESSES})"
                        )
        policies: list[tuple[str, str, str]] = []
        applied.state["policies"] = policies

        async def create(region: Region, ns: str) -> None:
            body = self._policy(fault, region, ns, far_by_region.get(region.name, []), expires)
            net = client.NetworkingV1Api(region.api)
            name = body["metadata"]["name"]
            try:
                await kcall(net.create_namespaced_network_policy, ns, body)
            except ApiError as exc:
                if exc.status != 409:
                    raise FaultError(
                        f"NetworkPolicy {ns}/{name} in {region.context}: {exc}"
                    ) from exc
                await kcall(net.replace_namespaced_network_policy, name, ns, body)
            policies.append((region.name, ns, name))

        await asyncio.gather(
            *(
                create(self._region(r), ns)
                for r in self._fault_regions(fault)
                for ns in self._region(r).namespaces
            )
        )

    async def _policies_present(self, applied: Applied) -> bool:
        client = _client_api()

        async def present(region: str, ns: str, name: str) -> bool:
            net = client.NetworkingV1Api(self._region(region).api)
            try:
                await kcall(net.read_namespaced_network_policy, name, ns)
            except ApiError as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        seen: set[tuple[str, str, str]] = applied.state.setdefault("policiesSeen", set())
        todo = [tuple(p) for p in applied.state["policies"] if tuple(p) not in seen]
        found = await asyncio.gather(*(present(*p) for p in todo))
        seen.update(p for p, ok in zip(todo, found, strict=True) if ok)
        applied.pending += [
            f"{r}/NetworkPolicy/{ns}/{name}: not found"
            for (r, ns, name), ok in zip(todo, found, strict=True)
            if not ok
        ]
        return len(seen) == len(applied.state["policies"])

    async def _delete_policies(self, region: Region, labels: str) -> None:
        client = _client_api()
        net = client.NetworkingV1Api(region.api)
        await asyncio.gather(
            *(
                kcall(net.delete_collection_namespaced_network_policy, ns, label_selector=labels)
                for ns in region.namespaces
            )
        )

    # -- node faults: NetworkFaults ----------------------------------------------------
    def _contexts(self) -> dict[str, Region]:
        out: dict[str, Region] = {}
        for r in self._regions.values():
            out.setdefault(r.context, r)
        return out

    async def _agents(self, region: Region) -> set[str]:
        """Nodes whose agent heartbeat Lease is current."""
        client = _client_api()
        coord = client.CoordinationV1Api(region.api)
        try:
            body = await kcall(coord.list_namespaced_lease, agent_namespace())
        except ApiError as exc:
            if exc.status in (403, 404):
                return set()
            raise
        now = _now()
        alive = set()
        for lease in body.get("items") or []:
            name = _meta(lease)["name"]
            spec = lease.get("spec") or {}
            renewed = parse_micro_time(spec.get("renewTime"))
            if renewed is None or not name.startswith(nf.AGENT_LEASE_PREFIX):
                continue
            if renewed + float(spec.get("leaseDurationSeconds") or 0) > now:
                alive.add(str(spec.get("holderIdentity") or ""))
        return alive

    async def _create_network_faults(self, applied: Applied, ttl: float, optional: bool) -> None:
        fault = applied.fault
        addrs = await self._addresses()
        try:
            per_region = node_faults(
                fault,
                addrs,
                run_id=self.options.run_id,
                replication_ports=replication_ports() if fault.type == "replicationLag" else (),
            )
        except InvalidInputError as exc:
            if optional:
                log.info("fault %s: no node rules: %s", fault.name, exc)
                return
            raise FaultError(str(exc)) from exc
        agents = dict(
            zip(
                per_region,
                await asyncio.gather(*(self._agents(self._region(r)) for r in per_region)),
                strict=True,
            )
        )
        missing = {
            r: [
                _meta(n)["name"] for n in self._region(r).nodes if _meta(n)["name"] not in agents[r]
            ]
            for r in per_region
        }
        if any(missing.values()):
            if optional:
                log.info("fault %s: node rules skipped, no agent on %s", fault.name, missing)
                return
            where = "; ".join(f"region {r}: {', '.join(n)}" for r, n in missing.items() if n)
            raise FaultError(
                f"fault {fault.name!r} needs the chaosaa agent on every node; none runs on "
                f"{where} (install the agent DaemonSet; its heartbeat Leases live in "
                f"namespace {agent_namespace()})"
            )
        client = _client_api()
        now = _now()
        created: list[tuple[str, str]] = []
        applied.state["networkFaults"] = created

        async def create(region: Region, node: str, node_fault: NodeFault) -> None:
            body = nf.network_fault(
                node_fault,
                node=node,
                run_id=self.options.run_id,
                fault_name=fault.name,
                ttl=ttl,
                now=now,
            )
            objs = client.CustomObjectsApi(region.api)
            try:
                await kcall(
                    objs.create_cluster_custom_object, nf.GROUP, nf.VERSION, nf.PLURAL, body
                )
            except ApiError as exc:
                if exc.status == 404:
                    raise FaultError(
                        f"the NetworkFault CRD is not installed in context {region.context} "
                        "(`chaosaa crd render | kubectl apply -f -`)"
                    ) from exc
                raise FaultError(f"NetworkFault for node {node}: {exc}") from exc
            created.append((region.name, body["metadata"]["name"]))

        await asyncio.gather(
            *(
                create(self._region(r), _meta(n)["name"], node_fault)
                for r, node_fault in per_region.items()
                for n in self._region(r).nodes
            )
        )

    async def _list_network_faults(self, region: Region, labels: str) -> list[dict[str, Any]]:
        client = _client_api()
        objs = client.CustomObjectsApi(region.api)
        try:
            body = await kcall(
                objs.list_cluster_custom_object,
                nf.GROUP,
                nf.VERSION,
                nf.PLURAL,
                label_selector=labels,
            )
        except ApiError as exc:
            if exc.status == 404:
                return []
            raise
        return list(body.get("items") or [])

    async def _network_faults_applied(self, applied: Applied) -> bool:
        labels = selector(self._labels(applied.fault))
        wanted = {name for _, name in applied.state["networkFaults"]}
        lists = await asyncio.gather(
            *(self._list_network_faults(r, labels) for r in self._contexts().values())
        )
        seen: dict[str, dict[str, Any]] = {}
        waiting: list[str] = []
        for items in lists:
            for item in items:
                seen[_meta(item)["name"]] = item
        for name in wanted:
            found = seen.get(name)
            if found is None:
                raise FaultError(f"NetworkFault {name} disappeared before it took effect")
            status = found.get("status") or {}
            if status.get("phase") == nf.PHASE_FAILED:
                raise FaultError(
                    f"fault {applied.fault.name!r} failed on node "
                    f"{(found.get('spec') or {}).get('node')}: {status.get('message')}"
                )
            if status.get("phase") != nf.PHASE_APPLIED:
                node = (found.get("spec") or {}).get("node")
                waiting.append(
                    f"NetworkFault {name}: phase {status.get('phase') or 'unset'}; "
                    f"is the chaosaa agent running on node {node}?"
                )
        applied.pending += waiting
        return not waiting

    async def _renew_network_faults(self, applied: Applied, ttl: float) -> None:
        client = _client_api()
        body = nf.renewal(ttl, _now())

        async def one(region: str, name: str) -> None:
            objs = client.CustomObjectsApi(self._region(region).api)
            obj = await kcall(
                objs.patch_cluster_custom_object, nf.GROUP, nf.VERSION, nf.PLURAL, name, body
            )
            status = (obj or {}).get("status") or {}
            if status.get("phase") == nf.PHASE_REVERTED:
                raise FaultError(
                    f"NetworkFault {name} was reverted by its agent: {status.get('message')}"
                )

        await asyncio.gather(*(one(r, n) for r, n in applied.state.get("networkFaults", [])))

    async def _delete_network_faults(self, region: Region, labels: str) -> None:
        client = _client_api()
        objs = client.CustomObjectsApi(region.api)
        try:
            await kcall(
                objs.delete_collection_cluster_custom_object,
                nf.GROUP,
                nf.VERSION,
                nf.PLURAL,
                label_selector=labels,
            )
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def _await_agents(self, region: Region, wait: float = 5.0) -> list[str]:
        """After deleting NetworkFaults: give agents ``wait`` s, then release the rest."""
        deadline = time.monotonic() + wait
        while True:
            items = await self._list_network_faults(region, nf.LABEL_RUN)
            stuck = [_meta(i)["name"] for i in items if _meta(i).get("deletionTimestamp")]
            if not stuck or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        return await release_stuck_network_faults(region.api, stuck) if stuck else []

    async def _drop_leases(self, region: Region) -> list[str]:
        client = _client_api()
        coord = client.CoordinationV1Api(region.api)
        body = await kcall(
            coord.list_lease_for_all_namespaces,
            label_selector=selector({nf.LABEL_MANAGED_BY: nf.MANAGED_BY}),
            field_selector=f"metadata.name={LEASE_NAME}",
        )
        out = []
        for lease in body.get("items") or []:
            meta = _meta(lease)
            holder = (lease.get("spec") or {}).get("holderIdentity")
            with contextlib.suppress(ApiError):
                await kcall(coord.delete_namespaced_lease, meta["name"], meta["namespace"])
                out.append(
                    f"Lease {meta['namespace']}/{meta['name']} (held by {holder}) deleted "
                    f"({region.context})"
                )
        return out


def _node_action(fault: Fault) -> str:
    t = fault.type
    if t == "latency":
        return f"tc netem delay {getattr(fault, 'delay', 0) * 1000:g}ms"
    if t == "bandwidth":
        return f"tc tbf limit {getattr(fault, 'rate', 0):g} bit/s"
    if t == "packetLoss":
        return f"nft drop {getattr(fault, 'percent', 0):g}%"
    if t == "replicationLag":
        mode = getattr(fault, "mode", "throttle")
        return (
            "nft drop of the replication port"
            if mode == "pause"
            else "tc htb throttle of the replication port"
        )
    return t


def micro_time(ts: float) -> str:
    """Kubernetes MicroTime: RFC 3339 with microseconds."""
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(value: Any) -> float | None:
    if not value:
        return None
    try:
        return nf.parse_time(str(value))
    except ValueError:
        return None
