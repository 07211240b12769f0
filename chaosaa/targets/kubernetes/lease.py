"""One run per target: a ``coordination.k8s.io/v1`` Lease ``chaosaa-gameday`` per context.

The Lease lives in each region's first namespace (``default`` for a region without one),
holder = the run id, renewed with the faults. A run that finds another run's Lease
unexpired is refused (``LeaseHeldError``); an expired one (its run died) is taken over. A
run that loses the race for one context gives back the Leases it took.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from chaosaa.errors import LeaseHeldError, TargetUnreachableError
from chaosaa.kube import (
    ApiError,
    ConflictError,
    NotFoundError,
    meta,
    micro_time,
    parse_micro_time,
    selector,
)
from chaosaa.rules import resource as nf
from chaosaa.targets.kubernetes.regions import Region, Regions

LEASE_NAME = "chaosaa-gameday"
#: how often a Lease that keeps changing under us is read again before giving up
ATTEMPTS = 3


class RunLease:
    """The Leases of one run, one per (context, lease namespace) of the target."""

    def __init__(self, regions: Regions) -> None:
        self.regions = regions
        self._held: list[tuple[Region, str]] = []

    def _sites(self) -> list[Region]:
        seen: dict[tuple[str, str], Region] = {}
        for region in sorted(self.regions, key=lambda r: r.name):
            seen.setdefault((region.context, region.lease_namespace), region)
        return list(seen.values())

    async def acquire(self, holder: str, ttl: float) -> None:
        """Take every Lease, or none."""
        taken: list[tuple[Region, str]] = []
        try:
            for region in self._sites():
                await _take(region, holder, ttl)
                taken.append((region, holder))
        except BaseException:
            for region, h in taken:
                with contextlib.suppress(Exception):
                    await _drop(region, h)
            raise
        self._held = taken

    async def renew(self, holder: str, ttl: float) -> None:
        for region, _ in self._held:
            await _take(region, holder, ttl)

    async def release(self, holder: str) -> None:
        held, self._held = self._held, []
        for region, h in held:
            with contextlib.suppress(Exception):
                await _drop(region, h)


async def _take(region: Region, holder: str, ttl: float) -> None:
    kube, ns = region.kube, region.lease_namespace
    coord = kube.coordination
    now = time.time()
    spec = {
        "holderIdentity": holder,
        "leaseDurationSeconds": max(1, round(ttl)),
        "renewTime": micro_time(now),
    }
    for _ in range(ATTEMPTS):
        try:
            current = await kube.call(coord.read_namespaced_lease, LEASE_NAME, ns)
        except NotFoundError:
            if await _create(region, {**spec, "acquireTime": micro_time(now)}):
                return
            continue  # someone created it just now: look again
        except ApiError as exc:
            raise TargetUnreachableError(f"lease in {region.context}: {exc}") from exc
        cur_spec = current.get("spec") or {}
        other = cur_spec.get("holderIdentity")
        renewed = parse_micro_time(cur_spec.get("renewTime"))
        expires = (renewed or 0.0) + float(cur_spec.get("leaseDurationSeconds") or 0)
        if other and other != holder and expires > now:
            raise LeaseHeldError(
                f"target is busy: run {other!r} holds the lease {ns}/{LEASE_NAME} in "
                f"context {region.context} (renewed {now - (renewed or now):.0f}s ago, "
                f"expires in {expires - now:.0f}s unless renewed). Wait for that run to "
                "finish; if it died, its lease expires by itself."
            )
        patch_spec: dict[str, Any] = dict(spec)
        if other != holder:
            patch_spec["acquireTime"] = micro_time(now)
            patch_spec["leaseTransitions"] = int(cur_spec.get("leaseTransitions") or 0) + 1
        patch = {
            "metadata": {"resourceVersion": meta(current)["resourceVersion"]},
            "spec": patch_spec,
        }
        try:
            await kube.call(coord.patch_namespaced_lease, LEASE_NAME, ns, patch)
            return
        except ConflictError:
            continue  # changed under us: decide again on the new state
        except ApiError as exc:
            raise TargetUnreachableError(f"lease in {region.context}: {exc}") from exc
    raise LeaseHeldError(
        f"could not take the lease {ns}/{LEASE_NAME} in context {region.context}: "
        "it keeps changing (another run is starting)"
    )


async def _create(region: Region, spec: dict[str, Any]) -> bool:
    """Create the Lease; False when someone else created it first."""
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "labels": {nf.LABEL_MANAGED_BY: nf.MANAGED_BY}},
        "spec": {**spec, "leaseTransitions": 0},
    }
    kube = region.kube
    try:
        await kube.call(kube.coordination.create_namespaced_lease, region.lease_namespace, body)
    except ConflictError:
        return False
    except ApiError as exc:
        raise TargetUnreachableError(f"lease in {region.context}: {exc}") from exc
    return True


async def _drop(region: Region, holder: str) -> None:
    kube, ns = region.kube, region.lease_namespace
    coord = kube.coordination
    try:
        current = await kube.call(coord.read_namespaced_lease, LEASE_NAME, ns)
    except ApiError:
        return
    if (current.get("spec") or {}).get("holderIdentity") != holder:
        return
    with contextlib.suppress(ApiError):
        await kube.call(
            coord.delete_namespaced_lease,
            LEASE_NAME,
            ns,
            body={"preconditions": {"resourceVersion": meta(current)["resourceVersion"]}},
        )


async def drop_all(region: Region) -> list[str]:
    """Delete every run Lease in the region's context, whoever holds it (rollback)."""
    kube = region.kube
    coord = kube.coordination
    body = await kube.call(
        coord.list_lease_for_all_namespaces,
        label_selector=selector({nf.LABEL_MANAGED_BY: nf.MANAGED_BY}),
        field_selector=f"metadata.name={LEASE_NAME}",
    )
    out = []
    for lease in body.get("items") or []:
        m = meta(lease)
        holder = (lease.get("spec") or {}).get("holderIdentity")
        with contextlib.suppress(ApiError):
            await kube.call(coord.delete_namespaced_lease, m["name"], m["namespace"])
            out.append(
                f"Lease {m['namespace']}/{m['name']} (held by {holder}) deleted ({region.context})"
            )
    return out
