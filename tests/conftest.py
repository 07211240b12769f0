"""Shared test setup: tiers (DESIGN.md section 9) and the rule for missing components.

A test that needs a component this machine lacks is skipped locally, with the reason, and
fails in CI (env CI set): CI must never go green by skipping a whole tier.
"""

from __future__ import annotations

import os
import shutil

import pytest

#: shared fixtures: the real lab, a real Prometheus with a test exporter, real control planes
pytest_plugins = [
    "tests.lab.fixtures",
    "tests.prometheus.fixtures",
    "tests.k8s.fixtures",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kind", action="store_true", help="run the kind tier (needs Docker + kind)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--kind"):
        return
    skip = pytest.mark.skip(reason="kind tier is opt-in: pass --kind (needs a Docker engine)")
    for item in items:
        if item.get_closest_marker("kind") is not None:
            item.add_marker(skip)


def missing(reason: str) -> None:
    """Skip locally, fail in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"required component missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name!r} not found on PATH ({install_hint})")
    assert path is not None
    return path
