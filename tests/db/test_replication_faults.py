"""Faults act on the databases' own replication: a held link (PostgreSQL, through a TCP
forwarder as the lab's link proxy will be) or a cut namespace (Galera, node rules) stops
replication; lag grows by the exporter and by the canaries, canaries stay pending (never
lost), and everything recovers after the fault goes."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest

from chaosaa.agent.node import NodeShell
from chaosaa.lab.storage import StorageError, open_storage
from chaosaa.lab.systems import SYSTEMS, Galera
from chaosaa.rules.execute import execute
from chaosaa.rules.generate import (
    rules_for,
)
from chaosaa.rules.model import NodeFault
from tests.db.helpers import (
    canary_probe,
    eventually,
    exporter_value,
    forwarders,
    require,
    routes,
)

pytestmark = [pytest.mark.db, pytest.mark.timeout(300)]

REGIONS = ["us", "eu", "ap"]
HOLD = 5.0


async def _exporter_lag(system_name: str, system: object) -> float | None:
    """us -> eu lag as the real exporter tells it (seconds for postgres-ha, bytes for aa)."""
    if system_name == "postgres-ha":
        return await exporter_value(system, "eu", "pg_replication_lag")  # type: ignore[arg-type]
    return await exporter_value(  # type: ignore[arg-type]
        system, "us", "pg_stat_replication_pg_wal_lsn_diff", application_name="eu_from_us"
    )


@pytest.mark.parametrize("name", ["postgres-ha", "postgres-aa"])
async def test_held_link_stops_replication_and_lag_recovers_after(
    name: str, tmp_path: Path
) -> None:
    cls = SYSTEMS[name]
    require(cls)
    system = cls(REGIONS, tmp_path / "logs")
    async with forwarders(system) as fwd, system.running(await routes(fwd), time_limit=180):
        if True:
            held = fwd["replication:eu>us"]  # eu's connection to us: us's data flows down
            probe = canary_probe(system.databases(), interval=0.1, poll_interval=0.05)
            await probe.open()
            probe.start()
            try:
                await asyncio.sleep(2.0)
                assert held.bytes > 0, "replication did not go through the forwarder"
                healthy = probe.lag_now("us", "eu")
                assert healthy is not None and healthy < 1.0
                held.hold()
                pairs = []
                deadline = time.monotonic() + HOLD
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    pairs.append((probe.lag_now("us", "eu"), await _exporter_lag(name, system)))
                canary_lag, exporter_lag = pairs[-1]
                assert canary_lag is not None and canary_lag >= HOLD - 1.5
                assert exporter_lag is not None and exporter_lag > 0
                if name == "postgres-ha":
                    assert exporter_lag >= HOLD - 1.5
                    diffs = [abs(c - e) for c, e in pairs[2:] if c is not None and e is not None]
                    print(
                        f"{name}: canary vs exporter lag while held: max |diff| "
                        f"{max(diffs):.3f}s, median {statistics.median(diffs):.3f}s"
                    )
                else:
                    print(
                        f"{name}: while held canary lag {canary_lag:.2f}s, exporter "
                        f"pg_wal_lsn_diff {exporter_lag:.0f} bytes"
                    )
                assert (probe.lag_now("us", "ap") or 0) < 1.0, "an unheld link lagged"
                assert probe.links[("us", "eu")].pending, "canaries crossed a held link"
                held.release()

                async def recovered() -> bool:
                    lag = probe.lag_now("us", "eu")
                    return lag is not None and lag < 1.0

                await eventually(recovered, 20, "canary lag us>eu back under 1s")
                if name == "postgres-ha":

                    async def exporter_recovered() -> bool:
                        lag = await _exporter_lag(name, system)
                        return lag is not None and lag < 1.5

                    await eventually(exporter_recovered, 20, "pg_replication_lag back")
                integrity = await probe.verify(30)
                assert integrity.acknowledged > 0
                assert (integrity.lost, integrity.divergent) == (0, 0), integrity
                for link in probe.summary():
                    if link.canaries_seen:
                        print(
                            f"{name} {link.source}>{link.target}: {link.canaries_seen} "
                            f"canaries, peak {link.peak_lag:.2f}s, resolution "
                            f"+-{link.resolution:.3f}s"
                        )
            finally:
                held.release()  # a primary's fast shutdown waits for its walsenders
                await probe.close()


@pytest.mark.timeout(400)
async def test_galera_minority_refuses_writes_and_canaries_report_lag_not_loss(
    tmp_path: Path,
) -> None:
    require(Galera)
    system = Galera(REGIONS, tmp_path / "logs")
    async with system.running(time_limit=180):
        ns = system.network.namespaces
        dbs = system.databases()
        probe = canary_probe(dbs, interval=0.1, poll_interval=0.05)
        await probe.open()
        probe.start()
        cut = rules_for(
            NodeFault("cutap", "blackhole", peers=(ns["us"].ip, ns["eu"].ip)), 1, ns["ap"].device
        )
        shell = NodeShell(ns["ap"].netns)
        minority = open_storage("ap", {"storage": dbs["ap"].to_config()})
        majority = open_storage("us", {"storage": dbs["us"].to_config()})
        await minority.start()
        await majority.start()
        try:
            await asyncio.sleep(1.5)
            await execute(cut.apply, shell)
            cut_at = time.monotonic()

            async def ap_not_ready() -> bool:
                return not await system.ready("ap")

            await eventually(ap_not_ready, 30, "ap to leave the Primary Component")
            print(f"galera: ap refuses queries {time.monotonic() - cut_at:.1f}s after the cut")
            with pytest.raises(StorageError):
                await minority.write("minority", b"x")
            await majority.write("majority", b"y")  # the majority keeps serving writes

            async def exporter_says_not_ready() -> bool:
                return await exporter_value(system, "ap", "mysql_global_status_wsrep_ready") == 0

            await eventually(exporter_says_not_ready, 10, "mysqld_exporter: wsrep_ready 0")
            await asyncio.sleep(3.0)
            lag = probe.lag_now("us", "ap")
            assert lag is not None and lag >= 3.0
            assert probe.links[("us", "ap")].pending, "canaries reached a cut-off region"
            assert probe.writers["ap"].errors > 0, "the minority accepted canary writes"
            await execute(cut.revert, shell)

            async def rejoined() -> bool:
                return await system.status("ap", "wsrep_local_state_comment") == "Synced"

            await eventually(rejoined, 60, "ap to rejoin and sync", interval=0.3)
            integrity = await probe.verify(30)
            assert integrity.acknowledged > 0
            assert (integrity.lost, integrity.divergent) == (0, 0), integrity
            peak = max(p.lag for p in probe.links[("us", "ap")].series)
            print(
                f"galera: us>ap canary lag peaked at {peak:.1f}s; converged after "
                f"{integrity.converged_after:.2f}s of verify"
            )
        finally:
            await execute(cut.revert, shell)
            await minority.close()
            await majority.close()
            await probe.close()
