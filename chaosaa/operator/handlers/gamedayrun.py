"""GameDayRun: start it, abort it on delete, recover it after an operator restart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chaosaa.operator import runs
from chaosaa.spec.crd import TERMINAL_PHASES

if TYPE_CHECKING:
    from chaosaa.operator.state import Operator


async def on_start(op: Operator, body: Mapping[str, Any]) -> None:
    """A new run, or one found when the operator starts (kopf create/resume)."""
    namespace, name = runs.key(body)
    phase = runs.phase_of(body)
    if phase in TERMINAL_PHASES or op.runs.owns(namespace, name):
        return
    if phase == "Running":
        owner = (body.get("status") or {}).get("operator") or "an earlier operator"
        await op.runs.recover(body, f"the operator running it ({owner}) stopped mid-run")
        return
    op.runs.start(body)


async def on_delete(op: Operator, body: Mapping[str, Any]) -> None:
    """Deleting a run aborts it: the engine reverts its faults before the finalizer goes."""
    namespace, name = runs.key(body)
    if await op.runs.stop(namespace, name, "the GameDayRun was deleted"):
        return
    if runs.phase_of(body) == "Running":
        await op.runs.recover(body, "deleted while no operator ran it", mark=False)


def index(body: Mapping[str, Any]) -> dict[tuple[str, str], tuple[str, str | None]]:
    """kopf index: (namespace, GameDay) -> (run, phase), for concurrencyPolicy."""
    namespace, name = runs.key(body)
    labels = body["metadata"].get("labels") or {}
    gameday = labels.get(runs.LABEL_GAMEDAY) or (body.get("spec") or {}).get("gameDay")
    if not gameday:
        return {}
    return {(namespace, str(gameday)): (name, runs.phase_of(body))}
