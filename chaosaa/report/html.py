"""``report.html``: one self-contained page (inline CSS, the chart as inline SVG)."""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Any

import jinja2
from markupsafe import Markup

from chaosaa.report.chart import render_chart_svg
from chaosaa.report.fmt import (
    by_region,
    format_bound,
    format_figure,
    format_instant,
    format_measured,
    format_number,
    format_offset,
    format_seconds,
)
from chaosaa.report.model import FaultResult, RunReport, SLOResult, SteadyStateResult

log = logging.getLogger(__name__)


def render_html(report: RunReport) -> str:
    """The whole page. A broken chart never costs the report: it becomes a note."""
    chart_svg: Markup | None = None
    chart_note = _empty_chart_note(report)
    try:
        svg = render_chart_svg(report)
    except Exception as e:  # the tables still carry every number
        log.warning("could not draw the timeline chart", exc_info=True, extra={"error": str(e)})
        svg = None
        chart_note = f"The timeline chart could not be drawn ({type(e).__name__}: {e})."
    if svg is not None:
        chart_svg = Markup(_strip_svg(svg))  # our own matplotlib output
    return _template().render(
        r=report,
        chart_svg=chart_svg,
        chart_note=chart_note,
        cards=_cards(report),
    )


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("chaosaa.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        instant=_instant,
        seconds=format_seconds,
        number=format_number,
        bound=format_bound,
        measured=lambda slo: format_measured(slo.measured, slo.unit),
        figure=lambda x, unit: format_figure(x.measured, unit, x.error_bound_seconds),
        kv=_kv,
        details=_slo_details,
        offset=_offset,
    )
    env.globals.update(
        slo_badge=_slo_badge,
        check_badge=_check_badge,
        in_place=_in_place,
        ratio=_ratio,
    )
    return env.get_template("report.html.j2")


def _strip_svg(svg: str) -> str:
    """Comments and RDF metadata carry nothing a reader sees (and the metadata links to
    matplotlib's site); drop them."""
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.DOTALL)
    return re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.DOTALL)


def _empty_chart_note(report: RunReport) -> str:
    if report.verdict == "aborted":
        return "No chart: the run was aborted before traffic or fault data were recorded."
    if report.verdict == "error":
        return "No chart: the run ended in an error before traffic or fault data were recorded."
    return "No chart data were recorded in this run."


# --------------------------------------------------------------------------- helpers


def _instant(ts: float | None) -> str:
    return "-" if ts is None else format_instant(ts)


@jinja2.pass_context
def _offset(ctx: jinja2.runtime.Context, ts: float | None) -> str:
    report: RunReport = ctx["r"]
    return format_offset(ts, report.started_at)


#: detail keys that hold instants (unix seconds) besides those ending in ``At``
_INSTANT_KEYS = {"start", "end", "faultStart", "faultEnd"}


@jinja2.pass_context
def _slo_details(ctx: jinja2.runtime.Context, slo: SLOResult) -> str:
    """What the SLO row says under its name: per-region percentiles where it has them (the
    full breakdown is in report.json), else every detail."""
    regions = by_region(slo.details)
    if regions:
        reason = slo.details.get("reason")
        return f"by serving region: {regions}" + (f"; {reason}" if reason else "")
    report: RunReport = ctx["r"]
    return _pairs(slo.details, report.started_at)


@jinja2.pass_context
def _kv(ctx: jinja2.runtime.Context, detail: dict[str, Any]) -> str:
    """Details as ``key=value``; instants relative to the run start, as everywhere else
    on the page (``firstFailureAt=+12.345s``, not ``1.796e+09``)."""
    report: RunReport = ctx["r"]
    return _pairs(detail, report.started_at)


def _pairs(detail: dict[str, Any], origin: float) -> str:
    return ", ".join(f"{k}={_short(k, v, origin)}" for k, v in detail.items())


def _short(key: str, value: Any, origin: float) -> str:
    is_instant = key.endswith("At") or key in _INSTANT_KEYS
    if is_instant and isinstance(value, int | float) and not isinstance(value, bool):
        return format_offset(float(value), origin)
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_short(key, v, origin) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + _pairs(value, origin) + "}"
    return str(value)


def _badge(state: str, text: str | None = None) -> Markup:
    return Markup('<span class="badge v-{}">{}</span>').format(state, text or state)


def _slo_badge(slo: SLOResult) -> Markup:
    if not slo.evaluated:
        return _badge("skipped", "not evaluated")
    if slo.verdict == "unknown" and slo.on_no_data == "ignore":
        return _badge("skipped", "no data (ignored)")
    return _badge(slo.verdict)


def _check_badge(check: SteadyStateResult) -> Markup:
    if not check.evaluated:
        return _badge("skipped", "not run")
    return _badge("passed" if check.passed else "failed")


def _in_place(fault: FaultResult) -> float | None:
    if fault.effective_at is None or fault.reverted_at is None:
        return None
    return fault.reverted_at - fault.effective_at


def _ratio(part: int, whole: int) -> str:
    return f"{part / whole * 100:.2f}%" if whole else "-"


@dataclass(frozen=True)
class _Card:
    label: str
    value: str
    sub: str = ""
    bad: bool = False


def _cards(report: RunReport) -> list[_Card]:
    """The few numbers people look for first: failover, lag, lost writes, errors."""
    cards = []
    for slo in report.slos:
        if slo.type in ("failoverTime", "replicationLag") and slo.evaluated:
            label = "failover time" if slo.type == "failoverTime" else "peak replication lag"
            bound = "" if slo.below_resolution else format_bound(slo.error_bound_seconds)
            sub = f"{slo.name} · objective {slo.objective}" + (f" · {bound}" if bound else "")
            value = format_measured(slo.measured, slo.unit)
            if slo.below_resolution:
                value = format_figure(slo.measured, slo.unit, slo.error_bound_seconds)
                sub += f" · from {slo.source}"
            cards.append(_Card(label, value, sub, bad=slo.fails_run))
    d = report.data_integrity
    cards.append(
        _Card(
            "lost writes",
            str(d.lost) if d.checked else "-",
            f"of {d.acknowledged_writes} acknowledged" if d.checked else "not read back",
            bad=d.lost > 0,
        )
    )
    t = report.traffic
    cards.append(
        _Card("requests", str(t.requests), f"{t.errors} errors ({_ratio(t.errors, t.requests)})")
    )
    return cards
