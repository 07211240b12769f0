"""A real Prometheus scraping an exporter the test drives, for tests that need Prometheus.

Fixtures (reusable from any test package; register them with
``pytest_plugins = ["tests.prometheus.fixtures"]`` in the root ``tests/conftest.py``):

- ``prometheus_bin`` (session): path of the ``prometheus`` binary; skips locally and fails
  in CI (env ``CI`` set) when it is missing. ``CHAOSAA_PROMETHEUS`` overrides the path.
- ``prom_exporter`` (module): an ``Exporter``: a prometheus_client registry served on a
  free 127.0.0.1 port; tests create gauges on it and set them at recorded instants.
- ``prometheus_server`` (module): a ``PrometheusServer`` (scrape interval 1s, tmp
  storage, retention 1h) scraping ``prom_exporter`` as job ``exporter``, ready and with
  the exporter up; stopped when the module is done.
- ``prom_client`` (function): a ``chaosaa.prom.PrometheusClient`` for it.

``run_prometheus()`` starts one with any targets, for fixtures of other packages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from chaosaa.prom import PrometheusClient
from tests.conftest import missing

T = TypeVar("T")

EXPORTER_JOB = "exporter"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def find_prometheus() -> str | None:
    """``CHAOSAA_PROMETHEUS``, else ``prometheus`` on PATH, else Debian's path."""
    env = os.environ.get("CHAOSAA_PROMETHEUS")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("prometheus")
    if found:
        return found
    return "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns something truthy, and return that; bounded."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:  # the thing we wait for may not answer yet
            last = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last})" if last else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------- exporter


class Exporter:
    """Metrics a test sets at known instants, served for Prometheus to scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._gauges: dict[str, Gauge] = {}
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = int(self._server.server_port)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def gauge(self, name: str, labelnames: Sequence[str] = ()) -> Gauge:
        """The gauge ``name`` (created on first use)."""
        if name not in self._gauges:
            self._gauges[name] = Gauge(
                name, f"test gauge {name}", labelnames=list(labelnames), registry=self.registry
            )
        return self._gauges[name]

    def set(self, name: str, value: float, **labels: str) -> float:
        """Set a gauge; return the instant (unix seconds) taken just before setting it."""
        gauge = self.gauge(name, sorted(labels))
        at = time.time()
        (gauge.labels(**labels) if labels else gauge).set(value)
        return at

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------------- prometheus


@dataclass
class PrometheusServer:
    url: str
    port: int
    scrape_interval: float
    process: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path
    jobs: dict[str, list[str]] = field(default_factory=dict)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def client(self, timeout: float = 10.0) -> PrometheusClient:
        return PrometheusClient(self.url, timeout=timeout)


def _config(jobs: Mapping[str, Sequence[str]], scrape_interval: float) -> str:
    interval = f"{round(scrape_interval * 1000)}ms"
    lines = [
        "global:",
        f"  scrape_interval: {interval}",
        f"  scrape_timeout: {interval}",
        f"  evaluation_interval: {interval}",
        "scrape_configs:",
    ]
    for job, targets in jobs.items():
        lines += [
            f"  - job_name: {job}",
            "    static_configs:",
            f"      - targets: [{', '.join(repr(t) for t in targets)}]",
        ]
    return "\n".join(lines) + "\n"


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def run_prometheus(
    binary: str,
    workdir: Path,
    jobs: Mapping[str, Sequence[str]],
    *,
    scrape_interval: float = 1.0,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[PrometheusServer]:
    """Start Prometheus on a free 127.0.0.1 port scraping ``jobs`` ({job: [host:port]});
    wait until it is ready; stop it (TERM, then KILL) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(_config(jobs, scrape_interval))
    for attempt in range(3):  # a free port can be taken before Prometheus binds it
        server = _start(binary, config, workdir, attempt, jobs, scrape_interval)
        try:
            ready = _wait_ready(server, ready_timeout)
            if not ready:
                continue  # it exited: most likely the port was taken; try another
            yield server
            return
        finally:
            _stop(server.process)
    raise AssertionError(f"Prometheus did not start (3 attempts):\n{server.log_tail()}")


def _start(
    binary: str,
    config: Path,
    workdir: Path,
    attempt: int,
    jobs: Mapping[str, Sequence[str]],
    scrape_interval: float,
) -> PrometheusServer:
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / f'data-{attempt}'}",
                "--storage.tsdb.retention.time=1h",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return PrometheusServer(
        url=f"http://127.0.0.1:{port}",
        port=port,
        scrape_interval=scrape_interval,
        process=process,
        log_path=log_path,
        workdir=workdir,
        jobs={k: list(v) for k, v in jobs.items()},
    )


def _wait_ready(server: PrometheusServer, timeout: float) -> bool:
    """True once ready; False if the process exited; AssertionError (with its log) if
    it neither became ready nor exited in time."""
    try:
        wait_until(
            lambda: server.process.poll() is not None or _ready(server.url),
            timeout=timeout,
            what=f"Prometheus at {server.url} to become ready",
        )
    except AssertionError:
        raise AssertionError(f"Prometheus did not become ready:\n{server.log_tail()}") from None
    return server.process.poll() is None


def wait_for_target_up(server: PrometheusServer, job: str, timeout: float = 30.0) -> None:
    with server.client() as client:
        wait_until(
            lambda: client.scalar(f'sum(up{{job="{job}"}}) == count(up{{job="{job}"}})'),
            timeout=timeout,
            what=f"job {job} to be scraped by {server.url}",
        )


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    path = find_prometheus()
    if path is None:
        missing(
            "no prometheus binary (apt-get install prometheus, or set CHAOSAA_PROMETHEUS "
            "to its path)"
        )
    assert path is not None
    return path


@pytest.fixture(scope="module")
def prom_exporter() -> Iterator[Exporter]:
    exporter = Exporter()
    try:
        yield exporter
    finally:
        exporter.close()


@pytest.fixture(scope="module")
def prometheus_server(
    prometheus_bin: str,
    prom_exporter: Exporter,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusServer]:
    workdir = tmp_path_factory.mktemp("prometheus")
    jobs = {EXPORTER_JOB: [prom_exporter.target]}
    with run_prometheus(prometheus_bin, workdir, jobs, scrape_interval=1.0) as server:
        wait_for_target_up(server, EXPORTER_JOB)
        yield server


@pytest.fixture
def prom_client(prometheus_server: PrometheusServer) -> Iterator[PrometheusClient]:
    with prometheus_server.client(timeout=10.0) as client:
        yield client
