"""PrometheusClient against a real Prometheus: queries, errors, configuration."""

from __future__ import annotations

import math
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from chaosaa.errors import PrometheusError, PromQLError
from chaosaa.prom import PrometheusClient, PrometheusQueryError, effective_step
from tests.prometheus.fixtures import (
    EXPORTER_JOB,
    Exporter,
    PrometheusServer,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.prometheus


def test_ping_succeeds_against_a_running_prometheus(prom_client: PrometheusClient) -> None:
    prom_client.ping()


def test_unreachable_prometheus_is_a_one_line_prometheus_error() -> None:
    port = free_port()  # nothing listens there any more
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with PrometheusClient(url, timeout=2.0) as client, pytest.raises(PrometheusError) as err:
        client.ping()
    assert str(err.value) == f"Prometheus at {url} is unreachable: connection refused"
    assert time.monotonic() - started < 5.0


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def test_prometheus_that_does_not_answer_times_out(silent_port: int) -> None:
    url = f"http://127.0.0.1:{silent_port}"
    started = time.monotonic()
    with PrometheusClient(url, timeout=0.5) as client, pytest.raises(PrometheusError) as err:
        client.range("up", time.time() - 60, time.time(), 1.0)
    assert str(err.value) == f"Prometheus at {url} did not answer within 0.5s"
    assert time.monotonic() - started < 5.0


def test_a_url_that_is_not_prometheus_says_so(prometheus_server: PrometheusServer) -> None:
    url = f"{prometheus_server.url}/not-here"
    with PrometheusClient(url, timeout=2.0) as client, pytest.raises(PrometheusError) as err:
        client.ping()
    assert "HTTP 404" in str(err.value) and "base URL" in str(err.value)


def test_a_server_answering_something_else_than_the_api_says_so(prom_exporter: Exporter) -> None:
    url = f"http://{prom_exporter.target}"  # an exporter answers every path with metrics text
    with PrometheusClient(url, timeout=2.0) as client, pytest.raises(PrometheusError) as err:
        client.ping()
    assert str(err.value) == (
        f"Prometheus at {url} sent an answer that is not JSON: is this the Prometheus base URL?"
    )
    with PrometheusClient(url, timeout=2.0) as client, pytest.raises(PrometheusError):
        client.scrape_interval()


@pytest.mark.parametrize("expr", ["sum(rate(up[1m])", "up +", 'up{job="exporter"', "rate(up)"])
def test_bad_promql_is_a_promql_error_naming_expression_and_parse_error(
    prom_client: PrometheusClient, expr: str
) -> None:
    with pytest.raises(PromQLError) as err:
        prom_client.check_expression(expr)
    message = str(err.value)
    assert repr(expr) in message
    assert re.search(r"parse error|expected type range vector", message), message
    assert "\n" not in message
    # the same mistake in a query proper is also the user's input, not the environment
    with pytest.raises(PromQLError):
        prom_client.instant(expr)
    with pytest.raises(PromQLError):
        prom_client.range(expr, time.time() - 10, time.time(), 1.0)


def test_a_valid_expression_passes_the_check(prom_client: PrometheusClient) -> None:
    prom_client.check_expression('sum(rate(up{job="exporter"}[15s]))')


def test_an_evaluation_error_is_not_a_parse_error(prom_client: PrometheusClient) -> None:
    # two series match one on the right: many-to-many, a property of the data
    expr = 'up + on() group_left (x) (label_replace(up, "x", "a", "", "") or vector(1))'
    prom_client.check_expression(expr)
    with pytest.raises(PrometheusQueryError) as err:
        prom_client.instant(expr)
    assert not isinstance(err.value, PromQLError)
    assert err.value.error_type == "execution"
    assert "could not evaluate" in str(err.value)


def test_scrape_interval_is_read_from_the_configuration(prom_client: PrometheusClient) -> None:
    assert prom_client.scrape_interval() == 1.0
    assert prom_client.scrape_interval(EXPORTER_JOB) == 1.0
    with pytest.raises(PrometheusError, match="no scrape job"):
        prom_client.scrape_interval("nope")


def test_instant_query_returns_series_with_labels(
    prom_client: PrometheusClient, prom_exporter: Exporter
) -> None:
    at = prom_exporter.set("chaosaa_test_instant", 42.0, region="eu")
    series = wait_until(
        lambda: prom_client.instant("chaosaa_test_instant"),
        timeout=30,
        what="the gauge to be scraped",
    )
    assert len(series) == 1
    assert series[0].labels["region"] == "eu" and series[0].labels["job"] == EXPORTER_JOB
    t, v = series[0].points[0]
    assert v == 42.0 and t >= at
    assert prom_client.scalar("sum(chaosaa_test_instant)") == 42.0
    assert prom_client.scalar("chaosaa_test_missing_metric") is None
    nan = prom_client.scalar("0/0")
    assert nan is not None and math.isnan(nan)  # returned as is: callers treat it as no data
    with pytest.raises(PromQLError, match="returned 2 series"):
        prom_client.scalar("chaosaa_test_instant or vector(1)")


def test_instant_query_at_an_aware_datetime(prom_client: PrometheusClient) -> None:
    at = datetime(2026, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    series = prom_client.instant("time()", at=at)
    assert series[0].points[0] == (at.timestamp(), at.timestamp())


def test_range_query_keeps_subsecond_instants(prom_client: PrometheusClient) -> None:
    start = time.time() - 5.75
    series = prom_client.range("time()", start, start + 2.5, 0.5)
    times = [t for t, _ in series[0].points]
    assert times == pytest.approx([start + i * 0.5 for i in range(6)], abs=0.001)


def test_range_query_over_a_long_range_raises_the_step(prom_client: PrometheusClient) -> None:
    end = time.time()
    start = end - 5 * 86_400
    series = prom_client.range("vector(1)", start, end, 1.0)
    step = effective_step(start, end, 1.0)
    assert step > 1.0
    assert len(series[0].points) <= 11_000
    assert series[0].points[1][0] - series[0].points[0][0] == pytest.approx(step, abs=1e-6)


async def test_async_wrappers_run_the_same_calls(prom_client: PrometheusClient) -> None:
    await prom_client.a_ping()
    await prom_client.a_check_expression("up")
    assert await prom_client.a_scrape_interval() == 1.0
    assert await prom_client.a_scalar("vector(3)") == 3.0
    now = time.time()
    assert len(await prom_client.a_range("vector(1)", now - 3, now, 1.0)) == 1
    assert await prom_client.a_instant("vector(2)")
