"""The kind tier's last test (files run in name order: after test_kind_e2e and
test_kind_operator): ``chaosaa kind down`` leaves nothing behind."""

from __future__ import annotations

import pytest

from tests.kind.clusters import Kind, host_watchdogs

pytestmark = [pytest.mark.kind, pytest.mark.timeout(600)]


def test_kind_down_leaves_no_container_network_context_or_watchdog(kind: Kind) -> None:
    done = kind.down()
    assert done.code == 0, done.stderr
    assert kind.nodes() == []
    networks = kind.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert "kind" not in networks
    assert kind.kube_contexts() == []
    assert host_watchdogs() == []
    assert not kind.target_file.exists()
