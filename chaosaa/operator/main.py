"""The operator's entry point: register the handlers with kopf and run it. Nothing else.

The logic is in ``handlers/gameday.py`` (GameDay), ``handlers/gamedayrun.py`` (GameDayRun)
and ``handlers/lifecycle.py`` (start-up, shutdown, credentials, liveness).
"""

from __future__ import annotations

from typing import Any

import kopf

from chaosaa.operator.config import OperatorConfig
from chaosaa.operator.handlers import gameday, gamedayrun, kopf_errors, lifecycle
from chaosaa.operator.scheduler import RunIndex
from chaosaa.operator.state import Operator
from chaosaa.spec.crd import GROUP, VERSION


def build_registry(op: Operator) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return lifecycle.login(op)

    @kopf.index(GROUP, VERSION, "gamedayruns", id="runs_by_gameday", registry=registry)
    def runs_by_gameday(body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return gamedayrun.index(body)

    @kopf.on.startup(registry=registry)
    async def startup(**kwargs: Any) -> None:
        settings: kopf.OperatorSettings = kwargs["settings"]
        index: RunIndex = kwargs["runs_by_gameday"]  # kopf passes indices by name
        with kopf_errors():
            await lifecycle.startup(op, settings, index)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await lifecycle.cleanup(op)

    @kopf.on.probe(id="chaosaa", registry=registry)
    def probe(**_: Any) -> dict[str, Any]:
        return lifecycle.probe(op)

    @kopf.on.event(GROUP, VERSION, "gamedays", registry=registry)
    async def gameday_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        with kopf_errors():
            await gameday.on_event(op, type, body)

    @kopf.on.event(GROUP, VERSION, "gamedayruns", registry=registry)
    async def gamedayrun_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        with kopf_errors():
            await gamedayrun.on_event(op, type, body)

    return registry


def run(config: OperatorConfig) -> None:
    """Run the operator until SIGINT/SIGTERM (or until it loses its lease)."""
    op = Operator(config)
    kopf.run(
        registry=build_registry(op),
        standalone=config.standalone or None,
        namespaces=config.namespaces,
        clusterwide=config.clusterwide,
        liveness_endpoint=config.liveness,
        peering_name=config.peering,
        priority=config.priority,
        stop_flag=op.stop_flag,
    )
