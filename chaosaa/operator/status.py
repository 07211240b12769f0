"""Writing a GameDay's ``status``: the scheduler, the runs and the handlers all do it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from chaosaa.errors import ChaosaaError
from chaosaa.kube import NotFoundError
from chaosaa.operator import runs
from chaosaa.operator.kube import Kube

log = logging.getLogger(__name__)


async def patch_gameday_status(
    kube: Kube, namespace: str, name: str, fields: Mapping[str, Any]
) -> bool:
    """Merge ``fields`` into a GameDay's status; False if that failed (gone already:
    nothing to do, True)."""
    try:
        await kube.patch_status(runs.GAMEDAYS, namespace, name, {"status": dict(fields)})
    except NotFoundError:
        return True
    except ChaosaaError as exc:
        log.warning("GameDay %s/%s: status not written: %s", namespace, name, exc)
        return False
    return True
