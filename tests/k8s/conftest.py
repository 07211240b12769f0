"""The ``k8s`` tier: every test under tests/k8s is marked ``k8s``; fixtures are in fixtures.py."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    default_timeout = float(config.getini("timeout") or 120)
    for item in items:
        if _HERE not in item.path.parents:
            continue
        item.add_marker(pytest.mark.k8s)
        # Starting the control planes (~tens of seconds on 2 shared cores) happens in the
        # first k8s test's setup; it has its own deadline, so keep the per-test timeout
        # for the test body only.
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(default_timeout, func_only=True))
