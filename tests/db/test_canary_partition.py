"""A canary written in one region and blocked by a partition is lag, never lost, until the
convergence timeout: while the link is cut its age keeps growing as the link's lag, the
read-back after recovery waits for it, and only a cut that outlasts the timeout makes it
lost (the canary then arrives late, which is why the timeout is the user's to choose).

Active-active PostgreSQL (pglogical), its us > eu replication held by a TCP forwarder
standing in for the lab's link proxy: us's canaries cannot reach eu, eu's own server
still answers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from chaosaa.lab.systems import PostgresAA
from tests.db.helpers import canary_probe, eventually, forwarders, require, routes

pytestmark = [pytest.mark.db, pytest.mark.timeout(240)]

REGIONS = ["us", "eu", "ap"]
#: how long the link is held before the read-back starts
HELD = 3.0


async def test_a_canary_blocked_by_a_partition_is_lag_until_the_convergence_timeout(
    tmp_path: Path,
) -> None:
    require(PostgresAA)
    system = PostgresAA(REGIONS, tmp_path / "logs")
    async with forwarders(system) as fwd, system.running(await routes(fwd), time_limit=180):
        link = fwd["replication:eu>us"]  # eu's subscription to us: us's rows flow to eu
        try:
            # 1. The partition heals inside the convergence timeout: nothing is lost.
            probe = canary_probe(system.databases(), interval=0.1, poll_interval=0.05)
            await probe.open()
            probe.start()
            try:
                await asyncio.sleep(1.5)
                link.hold()
                held_at = time.monotonic()
                await asyncio.sleep(HELD)
                blocked = probe.links[("us", "eu")]
                assert blocked.pending, "us's canaries crossed a held link"
                lag = probe.lag_now("us", "eu")
                assert lag is not None and lag >= HELD - 1.0, lag
                assert (probe.lag_now("us", "ap") or 0) < 1.0, "an unheld link lagged"
                verifying = asyncio.create_task(probe.verify(30.0))
                await asyncio.sleep(2.0)
                # still cut, inside the timeout: the read-back waits, nothing is lost yet
                assert not verifying.done(), "verify gave up while inside its timeout"
                assert blocked.pending, "blocked canaries left the pending set while cut"
                link.release()
                integrity = await asyncio.wait_for(verifying, 40)
            finally:
                link.release()
                await probe.close()
            cut = time.monotonic() - held_at
            assert integrity.acknowledged > 0
            assert (integrity.lost, integrity.divergent) == (0, 0), integrity
            # the link came back 2.0 s after the verify task was created; its clock starts once
            # the writers stopped, a few ms later (CI measured 1.994 s): 0.1 s of slack
            assert integrity.converged_after is not None and integrity.converged_after >= 1.9
            peak = max(p.lag for p in blocked.series)
            assert peak >= HELD - 1.0
            print(
                f"held {cut:.1f}s: us>eu canary lag peaked at {peak:.2f}s, "
                f"{integrity.acknowledged} canaries, 0 lost; read-back converged after "
                f"{integrity.converged_after:.2f}s"
            )

            # 2. The cut outlasts the timeout: only then are the blocked canaries lost...
            probe = canary_probe(system.databases(), interval=0.1, poll_interval=0.05)
            await probe.open()
            probe.start()
            try:
                await asyncio.sleep(1.0)
                link.hold()
                await asyncio.sleep(1.0)
                timeout = 1.5
                started = time.monotonic()
                integrity = await probe.verify(timeout)
                assert time.monotonic() - started >= timeout
                assert integrity.converged_after is None
                assert integrity.lost > 0
                assert all(c.startswith("us/") for c in integrity.lost_canaries)
                late = list(probe.links[("us", "eu")].pending)
                assert late
                link.release()

                # ... and they were only late: they arrive once the link is back
                async def arrived() -> bool:
                    store = probe.stores["eu"]
                    return set(late) <= await store.present(probe.run_id, "us", late)

                await eventually(arrived, 20, "the late canaries in eu")
            finally:
                link.release()
                await probe.close()
        finally:
            link.release()  # a provider's fast shutdown waits for its walsenders
