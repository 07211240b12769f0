"""Run reports: ``report.json`` (the source of truth), ``junit.xml`` and ``report.html``.

The engine builds a :class:`RunReport` with :func:`new_report`, records into it as the run
goes, calls :meth:`RunReport.finish` and :func:`write_reports`; ``chaosaa report`` loads the
JSON with :func:`load_report` and renders the rest again.
"""

from chaosaa.report.chartdata import build_chart
from chaosaa.report.console import render_summary
from chaosaa.report.html import render_html
from chaosaa.report.junit import render_junit
from chaosaa.report.model import (
    EXIT_CODES,
    SCHEMA_VERSION,
    Chart,
    ChartMarker,
    ChartWindow,
    DataIntegrity,
    FaultResult,
    RegionTraffic,
    ReportFileError,
    RunReport,
    SLOResult,
    SteadyState,
    SteadyStateResult,
    TargetInfo,
    TimelineEvent,
    Traffic,
    load_report,
    new_report,
    slo_not_evaluated,
    slo_result,
    steady_state_not_evaluated,
    steady_state_result,
)
from chaosaa.report.write import write_reports

__all__ = [
    "EXIT_CODES",
    "SCHEMA_VERSION",
    "Chart",
    "ChartMarker",
    "ChartWindow",
    "DataIntegrity",
    "FaultResult",
    "RegionTraffic",
    "ReportFileError",
    "RunReport",
    "SLOResult",
    "SteadyState",
    "SteadyStateResult",
    "TargetInfo",
    "TimelineEvent",
    "Traffic",
    "build_chart",
    "load_report",
    "new_report",
    "render_html",
    "render_junit",
    "render_summary",
    "slo_not_evaluated",
    "slo_result",
    "steady_state_not_evaluated",
    "steady_state_result",
    "write_reports",
]
