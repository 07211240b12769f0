"""The link proxy's Prometheus metrics (``chaosaa_proxy_*``, see docs/lab.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from chaosaa.lab.proxy.conditions import DIRECTIONS, Direction


class ByteCounts(Protocol):
    """A link's bytes forwarded per direction: plain ints on the hot path."""

    @property
    def sent(self) -> Mapping[Direction, int]: ...


class ProxyMetrics:
    def __init__(self, links: Mapping[str, ByteCounts]) -> None:
        """Metrics of a proxy whose links (by name) are ``links``, a live mapping."""
        self.registry = CollectorRegistry()
        self.connections = Counter(
            "chaosaa_proxy_connections_total",
            "Connections accepted by a link proxy",
            ["link"],
            registry=self.registry,
        )
        self.active = Gauge(
            "chaosaa_proxy_active_connections",
            "Connections currently open through a link proxy",
            ["link"],
            registry=self.registry,
        )
        self.dropped = Counter(
            "chaosaa_proxy_dropped_connections_total",
            "Connections reset or refused by a link condition",
            ["link", "reason"],
            registry=self.registry,
        )
        self.conditions = Gauge(
            "chaosaa_proxy_conditions_active",
            "Live conditions on a link",
            ["link", "type"],
            registry=self.registry,
        )
        self.registry.register(_BytesCollector(links))


class _BytesCollector(Collector):
    """``chaosaa_proxy_bytes_total`` from the links' plain counters, at scrape time."""

    def __init__(self, links: Mapping[str, ByteCounts]) -> None:
        self.links = links

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "chaosaa_proxy_bytes", "Bytes forwarded by a link proxy", labels=["link", "direction"]
        )
        for name, link in self.links.items():
            for d in DIRECTIONS:
                family.add_metric([name, d], link.sent[d])
        yield family
