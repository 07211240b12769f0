"""After a run: the metrics, the GameDay's ``status.lastRun`` and the history limits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from chaosaa.errors import ChaosaaError
from chaosaa.operator import runs
from chaosaa.operator.kube import Kube
from chaosaa.operator.metrics import Metrics
from chaosaa.operator.status import patch_gameday_status
from chaosaa.spec.status import GameDayRunStatus, LastRun

log = logging.getLogger(__name__)


class RunHistory:
    def __init__(
        self,
        kube: Kube,
        metrics: Metrics,
        active_runs: Callable[[str, str], list[str]],
    ) -> None:
        self.kube = kube
        self.metrics = metrics
        #: runs of a GameDay that have not finished (the scheduler knows them)
        self.active_runs = active_runs

    async def record_finished(self, body: Mapping[str, Any], status: GameDayRunStatus) -> None:
        """Metrics, the GameDay's lastRun, and the history limits."""
        namespace, name = runs.key(body)
        spec = body.get("spec") or {}
        gameday = str(spec.get("gameDay", ""))
        verdict = status.verdict or "error"
        m = self.metrics
        m.runs_total.labels(namespace, gameday, verdict).inc()
        if status.failover_seconds is not None:
            m.failover_seconds.labels(namespace, gameday).set(status.failover_seconds)
        if status.peak_lag_seconds is not None:
            m.lag_peak_seconds.labels(namespace, gameday).set(status.peak_lag_seconds)
        last = LastRun(
            name=name,
            phase=status.phase,
            verdict=status.verdict,
            failover_seconds=status.failover_seconds,
            peak_lag_seconds=status.peak_lag_seconds,
            finished_at=status.finished_at,
        )
        await patch_gameday_status(
            self.kube,
            namespace,
            gameday,
            {
                "lastRun": last.model_dump(by_alias=True, exclude_none=True),
                "active": [n for n in self.active_runs(namespace, gameday) if n != name],
            },
        )
        await self._prune(namespace, gameday, spec.get("gameDaySpec") or {})

    async def _prune(self, namespace: str, gameday: str, spec: Mapping[str, Any]) -> None:
        try:
            existing = await self.kube.list(
                runs.GAMEDAYRUNS, namespace, f"{runs.LABEL_GAMEDAY}={gameday}"
            )
            keep_ok = int(spec.get("successfulRunsHistoryLimit", 3))
            keep_failed = int(spec.get("failedRunsHistoryLimit", 1))
            for old in runs.runs_to_delete(existing, keep_ok, keep_failed):
                await self.kube.delete(runs.GAMEDAYRUNS, namespace, old)
        except ChaosaaError as exc:
            log.warning("history of %s/%s not pruned: %s", namespace, gameday, exc)
