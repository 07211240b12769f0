"""One active operator at a time: a coordination.k8s.io Lease held while it works.

Why the operator needs it even with one replica: on start-up it marks every run left
``Running`` as ``Interrupted`` and rolls its target back. That is only right if no other
operator is running it. The Deployment's ``Recreate`` strategy makes a second one rare;
the lease makes it impossible (a second operator waits, a standby).

A holder is considered gone when the lease was released, when its ``renewTime`` is older
than ``leaseDurationSeconds``, or when it has not changed for that long since we first saw
it (robust against clock skew, as in client-go's leader election).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from chaosaa.errors import ChaosaaError
from chaosaa.kube import ConflictError, micro_time, parse_micro_time
from chaosaa.operator.kube import Kube

log = logging.getLogger(__name__)


class LeaseLostError(ChaosaaError):
    """Another operator holds the lease now: this one must stop."""


class LeaderLease:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration: float = 15.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.held = False
        self._lease: dict[str, Any] | None = None
        self._seen: tuple[str | None, float] | None = None  # (resourceVersion, monotonic)
        self.last_renewed = 0.0

    # ------------------------------------------------------------------ acquire

    async def acquire(self) -> None:
        """Wait until this operator holds the lease."""
        announced = False
        while not await self.try_acquire():
            if not announced and self._lease is not None:
                log.info(
                    "lease %s/%s is held by %s; waiting (standby)",
                    self.namespace,
                    self.name,
                    _spec(self._lease).get("holderIdentity"),
                )
                announced = True
            await asyncio.sleep(max(0.2, self.duration / 5))
        log.info("lease %s/%s acquired by %s", self.namespace, self.name, self.identity)

    async def try_acquire(self) -> bool:
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
            if lease is None:
                self._lease = await self.kube.create_lease(self.namespace, self._new())
                return self._took()
            self._lease = lease
            spec = _spec(lease)
            if spec.get("holderIdentity") == self.identity or self._expired(lease):
                transitions = int(spec.get("leaseTransitions") or 0)
                if spec.get("holderIdentity") != self.identity:
                    transitions += 1
                now = micro_time(time.time())
                spec.update(
                    holderIdentity=self.identity,
                    leaseDurationSeconds=max(1, round(self.duration)),
                    acquireTime=now,
                    renewTime=now,
                    leaseTransitions=transitions,
                )
                self._lease = await self.kube.replace_lease(self.namespace, lease)
                return self._took()
        except ConflictError:  # AlreadyExistsError included
            return False  # someone else was quicker: look again
        except ChaosaaError as exc:
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
        return False

    def _took(self) -> bool:
        self.held = True
        self.last_renewed = time.monotonic()
        return True

    def _new(self) -> dict[str, Any]:
        now = micro_time(time.time())
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/part-of": "chaosaa"},
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.duration)),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }

    def _expired(self, lease: dict[str, Any]) -> bool:
        spec = _spec(lease)
        if not spec.get("holderIdentity"):
            return True  # released
        duration = float(spec.get("leaseDurationSeconds") or self.duration)
        renewed = parse_micro_time(spec.get("renewTime"))
        if renewed is not None and time.time() - renewed > duration:
            return True
        version = (lease.get("metadata") or {}).get("resourceVersion")
        now = time.monotonic()
        if self._seen is None or self._seen[0] != version:
            self._seen = (version, now)
            return False
        return now - self._seen[1] > duration

    # ------------------------------------------------------------------ hold

    async def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew every third of the duration; call ``on_lost`` once it cannot be held."""
        while self.held:
            await asyncio.sleep(self.duration / 3)
            try:
                await self.renew()
            except LeaseLostError as exc:
                log.error("%s", exc)
                self.held = False
                on_lost()
                return
            except ChaosaaError as exc:
                if time.monotonic() - self.last_renewed > self.duration:
                    log.error("lease not renewed for %.0fs: %s", self.duration, exc)
                    self.held = False
                    on_lost()
                    return
                log.warning("renewing lease %s/%s failed: %s", self.namespace, self.name, exc)

    async def renew(self) -> None:
        if self._lease is None:
            raise LeaseLostError("lease was never acquired")
        for _ in range(2):  # a conflict with our own earlier write: once more, freshly read
            lease = self._lease
            _spec(lease)["renewTime"] = micro_time(time.time())
            try:
                self._lease = await self.kube.replace_lease(self.namespace, lease)
            except ConflictError:
                fresh = await self.kube.read_lease(self.namespace, self.name)
                holder = _spec(fresh).get("holderIdentity") if fresh is not None else None
                if fresh is None or holder != self.identity:
                    raise LeaseLostError(
                        f"lease {self.namespace}/{self.name} is now held by {holder}"
                    ) from None
                self._lease = fresh
                continue
            self.last_renewed = time.monotonic()
            return

    async def release(self) -> None:
        """Give the lease up so a successor does not wait for it to expire."""
        if not self.held or self._lease is None:
            return
        self.held = False
        lease = self._lease
        _spec(lease).pop("holderIdentity", None)
        _spec(lease)["renewTime"] = micro_time(time.time())
        try:
            await self.kube.replace_lease(self.namespace, lease)
            log.info("lease %s/%s released", self.namespace, self.name)
        except ChaosaaError as exc:
            log.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, exc)


def _spec(lease: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = lease.setdefault("spec", {})
    return spec
