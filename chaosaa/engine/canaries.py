"""Datastore canaries of a run (DESIGN.md section 8a): one :class:`CanaryProbe` per
datastore, writing in every region from the warm-up until the end of recovery; in verify,
after the convergence timeout, every acknowledged canary is read back from every region.

Datastores come from ``spec.datastores`` (credentials resolved from the environment now,
never from the file) and from the target (a lab running a database system supplies its
own). A canary that a cut link holds back is pending - lag, not loss - until verify gives
up on it at the convergence timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from chaosaa.canary import CanaryProbe, CanaryStoreError, Connection, Integrity, store_for
from chaosaa.canary.config import connections
from chaosaa.engine.progress import Progress
from chaosaa.errors import TargetUnreachableError
from chaosaa.spec.model import GameDaySpec
from chaosaa.targets.base import Endpoints

log = logging.getLogger(__name__)

#: cadence of the canaries of a datastore the target supplies (the Datastore defaults)
DEFAULT_INTERVAL = 0.2
DEFAULT_POLL_INTERVAL = 0.05


@dataclass
class Watch:
    """One datastore's canaries during a run."""

    name: str
    probe: CanaryProbe
    convergence_timeout: float
    integrity: Integrity | None = None
    #: why it could not be verified (every region unreadable...)
    error: str | None = None


class DatastoreCanaries:
    """Every datastore's canaries of one run."""

    def __init__(self, watches: list[Watch]) -> None:
        self.watches = watches

    @classmethod
    def for_run(cls, spec: GameDaySpec, endpoints: Endpoints, run_id: str) -> DatastoreCanaries:
        """The GameDay's datastores and the target's. Raises InvalidInputError for a
        credential that is not set."""
        default_timeout = spec.recovery.convergence_timeout
        watches = []
        for ds in spec.datastores:
            watches.append(
                _watch(
                    ds.name,
                    connections(ds),
                    run_id,
                    interval=ds.interval,
                    poll_interval=ds.poll_interval,
                    convergence_timeout=ds.convergence_timeout or default_timeout,
                )
            )
        for name, conns in endpoints.datastores.items():
            if any(w.name == name for w in watches):
                continue  # the GameDay's own entry wins
            watches.append(_watch(name, conns, run_id, convergence_timeout=default_timeout))
        return cls(watches)

    def __bool__(self) -> bool:
        return bool(self.watches)

    async def start(self) -> None:
        """Connect to every region, create the canary table where missing, start writing.
        A datastore none of whose regions answers is an environment error."""
        for w in self.watches:
            try:
                await w.probe.open()
            except CanaryStoreError as exc:
                raise TargetUnreachableError(f"datastore {w.name}: {exc}") from exc
            w.probe.start()

    async def verify(self, progress: Progress) -> None:
        """Stop writing, wait for every canary to converge (bounded), read all back."""
        for w in self.watches:
            progress.phase(
                "verify",
                f"datastore {w.name}: reading {len(w.probe.canaries)} canaries back from "
                f"every region (at most {w.convergence_timeout:g}s)",
            )
            try:
                w.integrity = await w.probe.verify(w.convergence_timeout)
            except CanaryStoreError as exc:
                w.error = str(exc)

    async def close(self) -> None:
        await asyncio.gather(*(w.probe.close() for w in self.watches), return_exceptions=True)

    def lag_samples(self) -> dict[str, list[tuple[float, float, float]]]:
        """Per link with samples (``us->eu``; ``orders us->eu`` when there are several
        datastores): canary lag as (when, lag, error bound)."""
        several = len(self.watches) > 1
        out = {}
        for w in self.watches:
            for (source, target), link in w.probe.links.items():
                if link.series:
                    key = f"{w.name} {source}->{target}" if several else f"{source}->{target}"
                    out[key] = [(p.at, p.lag, p.bound) for p in link.series]
        return out

    def attempts(self) -> dict[str, dict[str, list[tuple[float, float, bool]]]]:
        """Per datastore, per region: every canary write attempt (sent at, ended at,
        acknowledged)."""
        return {
            w.name: {r: list(wr.attempts) for r, wr in w.probe.writers.items()}
            for w in self.watches
        }


def _watch(
    name: str,
    conns: Mapping[str, Connection],
    run_id: str,
    *,
    convergence_timeout: float,
    interval: float = DEFAULT_INTERVAL,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
) -> Watch:
    stores = {region: store_for(conn) for region, conn in conns.items()}
    probe = CanaryProbe(stores, interval=interval, poll_interval=poll_interval, run_id=run_id)
    return Watch(name, probe, convergence_timeout)
