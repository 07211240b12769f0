"""Prometheus access: a synchronous client with timeouts, mapped errors and async wrappers."""

from chaosaa.prom.client import (
    MAX_POINTS,
    Instant,
    PrometheusClient,
    PrometheusQueryError,
    effective_step,
)

__all__ = ["MAX_POINTS", "Instant", "PrometheusClient", "PrometheusQueryError", "effective_step"]
