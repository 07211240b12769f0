"""GameDay: validate, keep the ``Valid`` condition, feed the scheduler, manual triggers.

Every watch event of a GameDay lands here (kopf ``on.event``: no finalizer, no diff-base
annotation on GameDays). Validation uses the CLI's models and rules; what the CRD schema
could not reject at admission (a region that is not in ``target.regions``, the type of an
SLO's ``max``) ends up in a ``Valid=False`` condition with the reason, and a Warning event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chaosaa.errors import SpecError
from chaosaa.kube import AlreadyExistsError
from chaosaa.operator import runs
from chaosaa.operator.events import ObjectRef
from chaosaa.operator.schedule import manual_run_name
from chaosaa.operator.status import patch_gameday_status
from chaosaa.spec.model import GameDay

if TYPE_CHECKING:
    from chaosaa.operator.state import Operator

VALID = "Valid"


async def on_event(op: Operator, event_type: str | None, body: Mapping[str, Any]) -> None:
    namespace, name = runs.key(body)
    meta = body["metadata"]
    if event_type == "DELETED" or meta.get("deletionTimestamp"):
        op.scheduler.remove(namespace, name)
        op.validated.pop(meta.get("uid", ""), None)
        return
    gameday, problem = validate(op, body)
    await sync_condition(op, body, gameday, problem)
    if gameday is None:
        op.scheduler.remove(namespace, name)
        await ignore_trigger(op, body, problem or "")
        return
    op.scheduler.upsert(body, gameday)
    await trigger(op, body)


def validate(op: Operator, body: Mapping[str, Any]) -> tuple[GameDay | None, str | None]:
    """The GameDay, or why it is invalid; remembered per (uid, generation)."""
    meta = body["metadata"]
    uid, generation = str(meta.get("uid", "")), int(meta.get("generation") or 0)
    cached = op.validated.get(uid)
    if cached is not None and cached[0] == generation:
        return cached[1], cached[2]
    try:
        result: tuple[GameDay | None, str | None] = (runs.validate_object(body), None)
    except SpecError as exc:
        result = (None, "; ".join(exc.problems))
    op.validated[uid] = (generation, *result)
    return result


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def sync_condition(
    op: Operator, body: Mapping[str, Any], gameday: GameDay | None, problem: str | None
) -> None:
    meta = body["metadata"]
    generation = meta.get("generation")
    if gameday is not None:
        spec = gameday.spec
        if spec.schedule:
            message = f"schedule {spec.schedule!r} in {spec.time_zone}"
            if spec.suspend:
                message += " (suspended)"
        else:
            message = "no schedule: runs start only when triggered"
        wanted = {"type": VALID, "status": "True", "reason": "Valid", "message": message}
    else:
        wanted = {"type": VALID, "status": "False", "reason": "Invalid", "message": problem or ""}
    conditions = list((body.get("status") or {}).get("conditions") or [])
    current = next((c for c in conditions if c.get("type") == VALID), None)
    same = current is not None and all(current.get(k) == v for k, v in wanted.items())
    if same and current is not None and current.get("observedGeneration") == generation:
        return
    transition = (
        current.get("lastTransitionTime")
        if current is not None and current.get("status") == wanted["status"]
        else None
    )
    condition = {
        **wanted,
        "lastTransitionTime": transition or _now(),
        "observedGeneration": generation,
    }
    others = [c for c in conditions if c.get("type") != VALID]
    await patch_gameday_status(
        op.kube,
        str(meta.get("namespace")),
        str(meta["name"]),
        {"conditions": [*others, condition], "observedGeneration": generation},
    )
    if gameday is None and not same:
        op.events.warning(ObjectRef.of(body), "Invalid", problem or "invalid")


async def trigger(op: Operator, body: Mapping[str, Any]) -> None:
    """``chaosaa.io/trigger=<anything new>``: one run per new value."""
    value = _trigger_value(body)
    if value is None:
        return
    namespace, name = runs.key(body)
    run = manual_run_name(name, value)
    manifest = runs.run_manifest(body, name=run, trigger="manual")
    try:
        await op.kube.create(runs.GAMEDAYRUNS, namespace, manifest)
    except AlreadyExistsError:
        pass  # this value fired already (its status write was lost)
    else:
        op.scheduler.note_created(namespace, name, run)
        op.events.normal(
            ObjectRef.of(body),
            "Triggered",
            f"created run {run} ({runs.ANNOTATION_TRIGGER}={value})",
        )
    await patch_gameday_status(op.kube, namespace, name, {"lastTrigger": value})


async def ignore_trigger(op: Operator, body: Mapping[str, Any], problem: str) -> None:
    value = _trigger_value(body)
    if value is None:
        return
    namespace, name = runs.key(body)
    op.events.warning(
        ObjectRef.of(body),
        "TriggerIgnored",
        f"not starting a run: the GameDay is invalid: {problem}",
    )
    await patch_gameday_status(op.kube, namespace, name, {"lastTrigger": value})


def _trigger_value(body: Mapping[str, Any]) -> str | None:
    value = (body["metadata"].get("annotations") or {}).get(runs.ANNOTATION_TRIGGER)
    if not value or value == (body.get("status") or {}).get("lastTrigger"):
        return None
    return str(value)
