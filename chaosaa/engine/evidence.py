"""What the verify phase gathers besides the SLOs' own measurements: every acknowledged
write read back from every region, the system's conflict count, the lag series of the
chart. Each goes into the run's outcome."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from chaosaa.engine.faults import EventSink
from chaosaa.engine.outcome import RunOutcome
from chaosaa.engine.progress import Progress
from chaosaa.errors import ChaosaaError
from chaosaa.measure.lost_writes import lost_writes
from chaosaa.prom.client import PrometheusClient
from chaosaa.spec.model import ReplicationLagSLO
from chaosaa.targets.base import Endpoints
from chaosaa.traffic.readback import wait_converged

log = logging.getLogger(__name__)


async def read_back(
    outcome: RunOutcome, convergence_timeout: float, progress: Progress, emit: EventSink
) -> dict[str, Any]:
    """Read every acknowledged write back from every region (DESIGN.md section 4), once
    they converged (up to ``convergence_timeout``); return the details of the lostWrites SLO."""
    endpoints = outcome.endpoints
    if not endpoints or not endpoints.regions or not outcome.acked:
        return {}
    keys = sorted({w.key for w in outcome.acked})
    progress.phase("verify", f"reading {len(keys)} keys back from every region")
    conv = await wait_converged(dict(endpoints.regions), keys, convergence_timeout)
    result = lost_writes(outcome.acked, conv.values)
    outcome.lost_writes = int(result.measured or 0)
    outcome.divergent_keys = len(conv.divergent)
    outcome.integrity_checked = not result.no_data
    details = {**result.details, "convergedAfterSeconds": round(conv.elapsed, 3)}
    if result.no_data:
        details["noData"] = True
    emit(
        "data.integrity",
        {
            "acknowledged": len(outcome.acked),
            "lost": outcome.lost_writes,
            "divergentKeys": len(conv.divergent),
        },
    )
    return details


async def conflict_count(
    prom: PrometheusClient | None, endpoints: Endpoints | None
) -> float | None:
    """The system's own conflict counter (e.g. last-writer-wins resolutions), if any."""
    query = endpoints.queries.get("conflicts") if endpoints else None
    if prom is None or not query:
        return None
    try:
        value: float | None = await asyncio.to_thread(prom.scalar, query)
    except ChaosaaError as exc:
        log.info("conflict count unavailable: %s", exc)
        return None
    return value


async def collect_series(
    prom: PrometheusClient | None, outcome: RunOutcome, end: float, conflicts_before: float | None
) -> None:
    """Lag series and conflict count for the report (best effort: charts only)."""
    endpoints = outcome.endpoints
    if prom is None or endpoints is None:
        return
    start = outcome.started_at
    step = max(1.0, (end - start) / 1000)
    slos = outcome.gameday.spec.slos
    lag = next(
        (s.promql for s in slos if isinstance(s, ReplicationLagSLO) and s.promql),
        endpoints.queries.get("replicationLag"),
    )
    ready = endpoints.queries.get("regionReady")
    try:
        if lag:
            outcome.lag_series = await asyncio.to_thread(prom.range, lag, start, end, step)
        if ready:
            outcome.region_ready = await asyncio.to_thread(prom.range, ready, start, end, step)
        after = await conflict_count(prom, endpoints)
        if after is not None and conflicts_before is not None:
            outcome.conflicts = max(0, round(after - conflicts_before))
    except ChaosaaError as exc:
        log.info("could not collect series for the report: %s", exc)
