"""Prometheus tier: a real Prometheus per test module (see ``fixtures.py``).

The fixtures live in ``tests/prometheus/fixtures.py`` so other packages can reuse them;
imported here so this package works on its own as well.
"""

from tests.prometheus.fixtures import (  # noqa: F401
    prom_client,
    prom_exporter,
    prometheus_bin,
    prometheus_server,
)
