"""Run reports: ``report.json`` (the source of truth), ``junit.xml`` and ``report.html``.

This package models and renders; it decides nothing (verdicts and exit codes are
:mod:`chaosaa.engine.verdict`'s). Import what you need from its modules, so that a caller
that only builds a report never loads the renderers' libraries (jinja2, rich,
matplotlib): :mod:`.model` (what ``report.json`` holds), :mod:`.chartdata` (the chart's
data), :mod:`.write` (the three files), :mod:`.console`, :mod:`.junit`, :mod:`.html`.
"""
