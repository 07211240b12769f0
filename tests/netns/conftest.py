"""The ``netns`` tier: generated node rules applied for real in network namespaces (root)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns.helpers import Link, leftover_namespaces, linked_pair, require_root_networking

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.netns)


@pytest.fixture
def link() -> Iterator[Link]:
    require_root_networking()
    before = set(leftover_namespaces())
    with linked_pair() as pair:
        yield pair
    assert set(leftover_namespaces()) <= before, "a test left network namespaces behind"
