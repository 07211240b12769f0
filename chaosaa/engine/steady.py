"""Steady-state checks and abort rules: PromQL expressions with an expectation."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chaosaa.engine.verdict import steady_state_result
from chaosaa.errors import AbortedError, ChaosaaError
from chaosaa.prom.client import PrometheusClient
from chaosaa.report.model import SteadyStateResult
from chaosaa.spec.model import AbortRule, SteadyStateCheck
from chaosaa.spec.types import Expectation

log = logging.getLogger(__name__)

#: how often abort rules are evaluated
ABORT_INTERVAL = 1.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    expect: str
    value: float | None  # None = no data / NaN / failed query: never a pass
    passed: bool
    error: str | None = None

    @property
    def value_text(self) -> str:
        return "no data" if self.value is None else f"{self.value:g}"


async def _values(prom: PrometheusClient, expr: str) -> list[float]:
    series = await asyncio.to_thread(prom.instant, expr)
    return [p[1] for s in series for p in s.points[-1:] if not math.isnan(p[1])]


def _judge(values: Sequence[float], expect: Expectation) -> tuple[float | None, bool]:
    """Every returned series must meet the expectation; report the worst value."""
    if not values:
        return None, False
    failing = [v for v in values if not expect.holds(v)]
    return (failing[0] if failing else values[0]), not failing


async def evaluate_check(
    prom: PrometheusClient, name: str, expr: str, expect: Expectation
) -> CheckResult:
    try:
        values = await _values(prom, expr)
    except ChaosaaError as exc:
        return CheckResult(name, str(expect), None, False, error=str(exc))
    value, passed = _judge(values, expect)
    return CheckResult(name, str(expect), value, passed)


async def evaluate_checks(
    prom: PrometheusClient, checks: Sequence[SteadyStateCheck]
) -> list[SteadyStateResult]:
    """Steady-state checks as the report records them; no data fails a check."""
    at = time.time()
    raw = await asyncio.gather(*(evaluate_check(prom, c.name, c.promql, c.expect) for c in checks))
    return [
        steady_state_result(check, r.value, at=at, error=r.error)
        for check, r in zip(checks, raw, strict=True)
    ]


async def watch_abort_rules(
    prom: PrometheusClient,
    rules: Sequence[AbortRule],
    emit: Callable[[str, dict[str, Any]], None],
) -> None:
    """Return never; raise AbortedError once a rule has not held for its ``for``."""
    violated_since: dict[str, float] = {}
    while True:
        results = await asyncio.gather(
            *(evaluate_check(prom, r.name, r.promql, r.expect) for r in rules)
        )
        now = time.monotonic()
        for rule, result in zip(rules, results, strict=True):
            if result.value is None:
                # no data cannot prove a violation; it is logged, the rule keeps watching
                log.info("abort rule %s: no data (%s)", rule.name, result.error or "empty")
                violated_since.pop(rule.name, None)
                continue
            if result.passed:
                violated_since.pop(rule.name, None)
                continue
            since = violated_since.setdefault(rule.name, now)
            if now - since >= rule.for_:
                emit("abort.fired", {"rule": rule.name, "value": result.value})
                raise AbortedError(
                    f"abort rule {rule.name!r} fired: {rule.promql} = {result.value_text}, "
                    f"expected {rule.expect} (for {rule.for_:g}s)"
                )
        await asyncio.sleep(ABORT_INTERVAL)
