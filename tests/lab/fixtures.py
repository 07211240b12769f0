"""Fixtures for tests that run against the real local lab.

``lab`` is one lab for the whole session (started in a temporary state directory, torn
down at the end); ``clean_lab`` reverts every fault and waits until the router routes
every home region to itself again, so each test starts from a healthy steady state.
They are registered for every test package by ``pytest_plugins`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chaosaa.lab import control
from tests.conftest import require_binary

#: fast hysteresis so tests that fail a region over do not wait long for fail-back
TEST_ROUTER_POLICY = {"hold_down": 1.0, "max_hold_down": 4.0, "flap_window": 5.0}


@dataclass
class Lab:
    state_dir: Path
    status: dict[str, Any]

    @property
    def supervisor(self) -> str:
        return str(self.status["supervisor"])

    @property
    def router(self) -> str:
        return str(self.status["router"])

    @property
    def prometheus(self) -> str:
        return str(self.status["prometheus"])

    @property
    def proxy(self) -> str:
        return str(self.status["proxy"]["admin"])

    @property
    def regions(self) -> list[str]:
        return list(self.status["regions"])

    def node(self, region: str) -> str:
        return str(self.status["regions"][region]["nodeUrl"])

    def region_url(self, region: str) -> str:
        return str(self.status["regions"][region]["url"])

    def live_status(self) -> dict[str, Any]:
        status: dict[str, Any] = call("GET", f"{self.supervisor}/status")[1]
        return status

    def inject(self, **fault: Any) -> dict[str, Any]:
        code, body = call("POST", f"{self.supervisor}/faults", fault)
        assert code == 201, body
        assert isinstance(body, dict)
        return body

    def revert(self, fault_id: str) -> None:
        call("DELETE", f"{self.supervisor}/faults/{fault_id}")


def call(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """HTTP request returning (status, parsed JSON or bytes); never raises on HTTP codes."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, payload, ctype = resp.status, resp.read(), resp.headers.get("Content-Type")
    except urllib.error.HTTPError as exc:
        status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type")
        exc.close()
    if ctype and "json" in ctype:
        return status, json.loads(payload)
    return status, payload


def request(
    method: str,
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes, dict[str, str]]:
    """Raw request returning (status, body, headers)."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers.items())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, exc.read(), dict(exc.headers.items())
        finally:
            exc.close()


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll until ``predicate`` returns a truthy value; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}; last={last!r}")


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (e.g. a lab's state directory)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            pids.append(int(entry))
    return pids


def metric(text: str, name: str, **labels: str) -> float | None:
    """Value of one sample in Prometheus text exposition format."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


def scrape(url: str) -> str:
    status, body, _ = request("GET", f"{url}/metrics")
    assert status == 200
    return body.decode()


@contextlib.contextmanager
def started_lab(state: Path) -> Iterator[Lab]:
    """A lab (us, eu, ap) in ``state`` for the duration of the block."""
    require_binary("prometheus", "apt-get install prometheus")
    status = control.up(["us", "eu", "ap"], state, timeout=90, router_policy=TEST_ROUTER_POLICY)
    try:
        yield Lab(state, status)
    finally:
        control.down(state)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with started_lab(tmp_path_factory.mktemp("lab-state")) as lab:
        yield lab


@pytest.fixture(scope="module")
def module_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab of the test module's own: for tests that break parts of it (a node, its
    Prometheus) or leave a killed run's lease behind."""
    with started_lab(tmp_path_factory.mktemp("module-lab")) as lab:
        yield lab


def reset_lab(lab: Lab) -> None:
    call("DELETE", f"{lab.supervisor}/faults")
    call("DELETE", f"{lab.proxy}/conditions")
    call("DELETE", f"{lab.supervisor}/capacity")  # the lab's own: unlimited

    def settled() -> bool:
        st = lab.live_status()
        serving = st["components"]["router"].get("serving") or {}
        return all(
            r["healthy"] and r["routerUp"] and serving.get(name) == name
            for name, r in st["regions"].items()
        )

    wait_until(settled, 30, 0.2, "every region healthy and serving its own home")


@pytest.fixture
def clean_lab(lab: Lab) -> Iterator[Lab]:
    """The session lab with no fault active and every region routed home, before and after."""
    reset_lab(lab)
    yield lab
    reset_lab(lab)
