"""The timeline chart of ``report.html``: an inline SVG drawn by matplotlib.

Top panel: traffic success rate per serving region. Then, when there are such data:
replication lag (solid: Prometheus, i.e. the exporters; dashed: the datastore canaries),
canary writes refused per region, and whether each region's database accepts writes
(e.g. Galera's wsrep_ready). Every panel: shaded fault windows labelled with the fault
name and dashed failover markers. The x axis is seconds since the run started.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from typing import Any

from chaosaa.durations import parse_duration
from chaosaa.report.fmt import format_instant, format_seconds
from chaosaa.report.model import RunReport

_REGION_COLOURS = [
    "#1f77b4",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
]
_FAULT_COLOURS = ["#d62728", "#ff7f0e", "#bcbd22", "#7f7f7f"]
_LAG_COLOURS = ["#8c564b", "#17becf", "#e377c2", "#393b79", "#2ca02c", "#1f77b4"]
_MARKER_COLOUR = "#111111"


def prewarm() -> None:
    """Import what :func:`render_chart_svg` needs (~0.4 s, ~1 s on a loaded machine).

    ``chaosaa run`` calls this in a thread while the GameDay's own recovery time runs, so
    that writing report.html at the end does not wait for matplotlib's import.
    """
    import matplotlib.figure  # noqa: F401
    from matplotlib.backends import backend_agg, backend_svg  # noqa: F401


def render_chart_svg(report: RunReport) -> str | None:
    """The chart as an ``<svg>`` element, or ``None`` when there is nothing to draw."""
    if report.chart.empty:
        return None
    # Lazy: matplotlib costs a second to import and only report rendering needs it.
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    chart = report.chart
    panels = ["success"] if any(chart.success_ratio.values()) else []
    if any(chart.replication_lag.values()) or any(chart.canary_lag.values()):
        panels.append("lag")
    if any(chart.canary_write_errors.values()):
        panels.append("refused")
    if any(chart.region_ready.values()):
        panels.append("ready")
    if not panels:
        panels = ["empty"]

    with mpl.rc_context(
        {
            "svg.fonttype": "path",  # glyphs as paths: identical in every browser, no font needed
            "svg.hashsalt": "chaosaa",  # stable element ids: same report, same SVG
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.color": "#e5e5e5",
            "grid.linewidth": 0.6,
        }
    ):
        fig = Figure(figsize=(10, 0.9 + 2.6 * len(panels)), layout="constrained")
        FigureCanvasAgg(fig)  # the Agg backend, without touching pyplot's global state
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        origin = report.started_at
        for ax, panel in zip(axes, panels, strict=True):
            if panel == "success":
                _success_panel(ax, report, origin)
            elif panel == "lag":
                _lag_panel(ax, report, origin)
            elif panel == "refused":
                _region_panel(
                    ax,
                    report,
                    origin,
                    report.chart.canary_write_errors,
                    "canary writes refused",
                    "refused (%)",
                )
                ax.set_ylim(-3, 110)
            elif panel == "ready":
                _region_panel(
                    ax,
                    report,
                    origin,
                    report.chart.region_ready,
                    "Database accepts writes (1 = ready)",
                    "ready",
                )
                ax.set_ylim(-0.1, 1.25)
                ax.set_yticks([0, 1])
            else:
                ax.set_yticks([])
                ax.text(
                    0.5,
                    0.5,
                    "no traffic or lag series recorded",
                    transform=ax.transAxes,
                    ha="center",
                    va="center",
                    color="#777777",
                )
            _fault_windows(ax, report, origin, labelled=ax is axes[0])
            _failover_markers(ax, report, origin, labelled=ax is axes[0])
        left, right = _x_range(report, origin)
        axes[-1].set_xlim(left, right)
        axes[-1].set_xlabel(
            f"seconds since the run started ({format_instant(origin)})", color="#444444"
        )
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None})
    return _svg_element(out.getvalue())


def _svg_element(document: str) -> str:
    """Drop the XML prolog and DOCTYPE (meaningless inside HTML) and fix the size so the
    SVG scales with the page."""
    start = document.find("<svg")
    svg = document[start:] if start >= 0 else document
    svg = re.sub(r'(<svg[^>]*?)\swidth="[^"]*"\s+height="[^"]*"', r"\1", svg, count=1)
    return svg.replace("<svg", '<svg role="img" aria-label="run timeline chart"', 1)


def _safe(text: str) -> str:
    # A "$" would switch matplotlib into mathtext and can fail to parse.
    return text.replace("$", r"\$")


def _region_colours(report: RunReport) -> dict[str, str]:
    names = list(report.target.regions)
    names += sorted(k for k in report.chart.success_ratio if k not in names)
    return {name: _REGION_COLOURS[i % len(_REGION_COLOURS)] for i, name in enumerate(names)}


def _with_gaps(
    points: list[tuple[float, float]], origin: float, step: float
) -> tuple[list[float], list[float]]:
    """x/y lists with a NaN wherever samples stop for longer than 1.5 steps, so matplotlib
    draws a gap instead of a straight line across a silent stretch."""
    xs: list[float] = []
    ys: list[float] = []
    previous: float | None = None
    for t, v in points:
        if previous is not None and t - previous > 1.5 * step:
            xs.append(math.nan)
            ys.append(math.nan)
        xs.append(t - origin)
        ys.append(v)
        previous = t
    return xs, ys


def _success_panel(ax: Any, report: RunReport, origin: float) -> None:
    chart = report.chart
    colours = _region_colours(report)
    half = chart.bucket_seconds / 2
    for region, points in chart.success_ratio.items():
        if not points:
            continue
        xs, ys = _with_gaps([(t + half, v * 100) for t, v in points], origin, chart.bucket_seconds)
        ax.plot(xs, ys, color=colours[region], linewidth=1.6, label=_safe(region))
    for threshold in _failover_thresholds(report):
        ax.axhline(threshold * 100, color="#999999", linestyle=":", linewidth=1)
    ax.set_ylim(-3, 118)  # headroom above 100% for the fault labels
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    ax.set_ylabel("success rate (%)")
    ax.set_title(
        "Traffic success rate per serving region", loc="left", fontsize=10, fontweight="bold"
    )
    _legend_outside(ax, "region")


def _lag_panel(ax: Any, report: RunReport, origin: float) -> None:
    chart = report.chart
    peak = 0.0
    lines = [
        (f"prometheus {k}", points, "-") for k, points in sorted(chart.replication_lag.items())
    ]
    lines += [(f"canary {k}", points, "--") for k, points in sorted(chart.canary_lag.items())]
    for i, (key, points, style) in enumerate(lines):
        if not points:
            continue
        step = _typical_step(points)
        xs, ys = _with_gaps(points, origin, step)
        colour = _LAG_COLOURS[i % len(_LAG_COLOURS)]
        ax.plot(xs, ys, color=colour, linewidth=1.4, linestyle=style, label=_safe(key))
        peak = max([peak, *(v for _, v in points)])
    for bound in _lag_bounds(report):
        ax.axhline(bound, color="#d62728", linestyle=":", linewidth=1)
        ax.annotate(
            f"SLO max {format_seconds(bound)}",
            xy=(0.995, bound),
            xycoords=("axes fraction", "data"),
            xytext=(0, 2),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=8,
            color="#d62728",
        )
        peak = max(peak, bound)
    ax.set_ylim(0, peak * 1.15 if peak > 0 else 1.0)
    ax.set_ylabel("replication lag (s)")
    ax.set_title("Replication lag", loc="left", fontsize=10, fontweight="bold")
    _legend_outside(ax, "link")


def _region_panel(
    ax: Any,
    report: RunReport,
    origin: float,
    data: dict[str, list[tuple[float, float]]],
    title: str,
    ylabel: str,
) -> None:
    """One line per region, in the regions' colours."""
    colours = _region_colours(report)
    peak = 0.0
    for region, points in sorted(data.items()):
        if not points:
            continue
        # A write held for seconds leaves seconds without a new one: only a long silence
        # is a gap.
        xs, ys = _with_gaps(points, origin, max(_typical_step(points), 3.0))
        colour = colours.get(region, _REGION_COLOURS[-1])
        ax.plot(xs, ys, color=colour, linewidth=1.4, label=_safe(region), drawstyle="steps-post")
        peak = max([peak, *(v for _, v in points)])
    ax.set_ylim(0, peak * 1.2 if peak > 0 else 1.0)
    ax.set_ylabel(ylabel)
    ax.set_title(title[0].upper() + title[1:], loc="left", fontsize=10, fontweight="bold")
    _legend_outside(ax, "region")


def _legend_outside(ax: Any, title: str) -> None:
    """The panel's legend, right of the plot, when it has labelled lines."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            handles,
            labels,
            title=title,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
        )


def _typical_step(points: list[tuple[float, float]]) -> float:
    gaps = sorted(b[0] - a[0] for a, b in itertools.pairwise(points) if b[0] > a[0])
    return gaps[len(gaps) // 2] if gaps else 1.0


def _fault_windows(ax: Any, report: RunReport, origin: float, *, labelled: bool) -> None:
    from matplotlib.transforms import blended_transform_factory

    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for i, window in enumerate(report.chart.fault_windows):
        colour = _FAULT_COLOURS[i % len(_FAULT_COLOURS)]
        start = window.start - origin
        end = (window.end if window.end is not None else report.finished_at) - origin
        end = max(end, start)
        ax.axvspan(start, end, color=colour, alpha=0.12, linewidth=0)
        ax.axvline(start, color=colour, linewidth=0.8, alpha=0.6)
        if labelled:
            ax.text(
                start + (end - start) / 2,
                0.985 - 0.07 * (i % 2),
                _safe(window.name),
                transform=trans,
                ha="center",
                va="top",
                color=colour,
                fontsize=8.5,
                fontweight="bold",
                clip_on=False,
            )


def _failover_markers(ax: Any, report: RunReport, origin: float, *, labelled: bool) -> None:
    from matplotlib.transforms import blended_transform_factory

    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for marker in report.chart.failover_markers:
        x = marker.at - origin
        ax.axvline(x, color=_MARKER_COLOUR, linestyle="--", linewidth=1.1)
        if labelled:
            ax.annotate(
                _safe(marker.label or marker.name),
                xy=(x, 0.12),  # above the 0% line an outage leaves
                xycoords=trans,
                xytext=(3, 0),  # right of the line: the outage it ends is on the left
                textcoords="offset points",
                rotation=90,
                ha="left",
                va="bottom",
                fontsize=8,
                color=_MARKER_COLOUR,
            )


def _x_range(report: RunReport, origin: float) -> tuple[float, float]:
    chart = report.chart
    xs = [0.0, report.duration_seconds]
    for points in (
        *chart.success_ratio.values(),
        *chart.replication_lag.values(),
        *chart.canary_lag.values(),
    ):
        if points:
            xs += [points[0][0] - origin, points[-1][0] - origin + chart.bucket_seconds]
    for w in chart.fault_windows:
        xs += [w.start - origin, (w.end if w.end is not None else w.start) - origin]
    xs += [m.at - origin for m in chart.failover_markers]
    left, right = min(xs), max(xs)
    if right - left < 1.0:
        right = left + 1.0
    return left, right


def _failover_thresholds(report: RunReport) -> list[float]:
    out = set()
    for slo in report.slos:
        threshold = slo.details.get("threshold")
        if slo.type == "failoverTime" and isinstance(threshold, int | float):
            out.add(float(threshold))
    return sorted(out)


def _lag_bounds(report: RunReport) -> list[float]:
    """The ``max`` of each replicationLag SLO, read back from its objective text."""
    out = set()
    for slo in report.slos:
        if slo.type != "replicationLag":
            continue
        match = re.match(r"\s*<=?\s*([0-9][0-9a-z.]*)", slo.objective)
        if match:
            try:
                out.add(parse_duration(match.group(1)))
            except ValueError:
                continue
    return sorted(out)
