"""GameDayRun: start it, abort it when it is deleted, recover it after an operator restart.

Every watch event of a run lands in :func:`on_event` (kopf ``on.event``). The run's own
state decides what to do, so the same event twice, or a restart, does no harm: a run is
started only by claiming it (``status.phase``: Running, with a resourceVersion
precondition). The finalizer is ours, not kopf's: scheduled runs are created with it (one
patch less per run in a burst of 500), and it is released only after the engine reverted
the run's faults.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chaosaa.errors import ChaosaaError
from chaosaa.kube import ConflictError, NotFoundError
from chaosaa.operator import runs
from chaosaa.spec.status import TERMINAL_PHASES

if TYPE_CHECKING:
    from chaosaa.operator.state import Operator

log = logging.getLogger(__name__)

#: attempts to add or release the finalizer (conflicts with other writers, API errors)
FINALIZER_ATTEMPTS = 8


async def on_event(op: Operator, event_type: str | None, body: Mapping[str, Any]) -> None:
    namespace, name = runs.key(body)
    meta = body["metadata"]
    if event_type == "DELETED":
        # gone although it had our finalizer (someone removed it by force): stop what runs
        await op.runs.stop(namespace, name, "the GameDayRun was deleted")
        return
    finalizers = meta.get("finalizers") or []
    if meta.get("deletionTimestamp"):
        if runs.FINALIZER in finalizers:
            await on_delete(op, body)
            await set_finalizer(op, body, present=False)
        return
    if runs.FINALIZER not in finalizers and runs.phase_of(body) not in TERMINAL_PHASES:
        fresh = await set_finalizer(op, body, present=True)
        if fresh is None:
            return
        body = fresh
    await on_start(op, body)


async def on_start(op: Operator, body: Mapping[str, Any]) -> None:
    """A new run, or one found when the operator starts."""
    namespace, name = runs.key(body)
    phase = runs.phase_of(body)
    if phase in TERMINAL_PHASES or op.runs.owns(namespace, name):
        return
    if phase == "Running":
        owner = (body.get("status") or {}).get("operator") or "an earlier operator"
        await op.orphans.recover(body, f"the operator running it ({owner}) stopped mid-run")
        return
    op.runs.start(body)


async def on_delete(op: Operator, body: Mapping[str, Any]) -> None:
    """Deleting a run aborts it: the engine reverts its faults before the finalizer goes."""
    namespace, name = runs.key(body)
    if await op.runs.stop(namespace, name, "the GameDayRun was deleted"):
        return
    if runs.phase_of(body) == "Running":
        await op.orphans.recover(body, "deleted while no operator ran it", mark=False)


async def set_finalizer(
    op: Operator, body: Mapping[str, Any], *, present: bool
) -> dict[str, Any] | None:
    """Add or release our finalizer (with the resourceVersion: never clobber another
    writer's finalizers); the object as it is afterwards, None when it is gone."""
    namespace, name = runs.key(body)
    current: Mapping[str, Any] | None = body
    for attempt in range(FINALIZER_ATTEMPTS):
        if current is None:
            return None
        meta = current["metadata"]
        finalizers = [f for f in meta.get("finalizers") or [] if f != runs.FINALIZER]
        if present:
            finalizers.append(runs.FINALIZER)
        elif runs.FINALIZER not in (meta.get("finalizers") or []):
            return dict(current)
        try:
            return await op.kube.patch(
                runs.GAMEDAYRUNS,
                namespace,
                name,
                {"metadata": {"finalizers": finalizers}},
                resource_version=meta.get("resourceVersion"),
            )
        except NotFoundError:
            return None
        except ConflictError:
            pass
        except ChaosaaError as exc:
            log.warning("run %s/%s: finalizer not updated: %s", namespace, name, exc)
            await asyncio.sleep(min(30.0, 0.5 * 2**attempt))
        current = await op.kube.get(runs.GAMEDAYRUNS, namespace, name)
    log.error("run %s/%s: gave up updating its finalizer", namespace, name)
    return None


def index(body: Mapping[str, Any]) -> dict[tuple[str, str], tuple[str, str | None]]:
    """kopf index: (namespace, GameDay) -> (run, phase), for concurrencyPolicy."""
    namespace, name = runs.key(body)
    labels = body["metadata"].get("labels") or {}
    gameday = labels.get(runs.LABEL_GAMEDAY) or (body.get("spec") or {}).get("gameDay")
    if not gameday:
        return {}
    return {(namespace, str(gameday)): (name, runs.phase_of(body))}
