"""Fixtures for the operator tests: CRDs installed, and real ``chaosaa operator`` processes.

The operator runs as a subprocess (``python -m chaosaa.cli.main operator``) against the
``us`` control plane of ``tests/k8s``, so that restarts and SIGKILLs are real.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.k8s.controlplane import ControlPlanes
from tests.lab.fixtures import wait_until

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "charts" / "chaosaa" / "crds"
GROUP, VERSION = "chaosaa.io", "v1alpha1"
REGION = "us"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """The lab tests' poller, with the argument order the operator tests use."""
    return wait_until(predicate, timeout, interval, what)


def kubectl(
    bin_dir: Path,
    kubeconfig: Path,
    *args: str,
    check: bool = True,
    stdin: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def operator_crds(control_planes: ControlPlanes, k8s_bin_dir: Path) -> None:
    """The checked-in CRDs, applied to the operator's cluster (region us)."""
    kubectl(
        k8s_bin_dir,
        control_planes.kubeconfig,
        "--context",
        control_planes.context(REGION),
        "apply",
        "--server-side",
        "-f",
        str(CRDS),
    )
    kubectl(
        k8s_bin_dir,
        control_planes.kubeconfig,
        "--context",
        control_planes.context(REGION),
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/gamedays.chaosaa.io",
        "crd/gamedayruns.chaosaa.io",
    )


class Cluster:
    """Admin access to region us, in the words of the tests."""

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.api = api
        self.ns = namespace
        self.custom = k8s.CustomObjectsApi(api)
        self.core = k8s.CoreV1Api(api)

    def create_gameday(self, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "GameDay",
            "metadata": {"name": name, **meta},
            "spec": spec,
        }
        out: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, "gamedays", body
        )
        return out

    def gameday(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "gamedays", name
        )
        return out

    def patch_gameday(self, name: str, patch: dict[str, Any], status: bool = False) -> None:
        fn = (
            self.custom.patch_namespaced_custom_object_status
            if status
            else self.custom.patch_namespaced_custom_object
        )
        fn(
            GROUP,
            VERSION,
            self.ns,
            "gamedays",
            name,
            patch,
            _content_type="application/merge-patch+json",
        )

    def runs(self, gameday: str | None = None) -> list[dict[str, Any]]:
        selector = f"chaosaa.io/gameday={gameday}" if gameday else None
        out = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.ns, "gamedayruns", label_selector=selector
        )
        return sorted(out["items"], key=lambda r: r["metadata"]["name"])

    def run(self, name: str) -> dict[str, Any] | None:
        try:
            out: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.ns, "gamedayruns", name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return out

    def delete_run(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, "gamedayruns", name)

    def events(self, name: str | None = None) -> list[Any]:
        selector = f"involvedObject.name={name}" if name else None
        return list(self.core.list_namespaced_event(self.ns, field_selector=selector).items)

    def reasons(self, name: str) -> list[str]:
        return [e.reason for e in sorted(self.events(name), key=lambda e: e.metadata.name)]


@pytest.fixture
def cluster(
    kube_clients: dict[str, k8s.ApiClient], k8s_namespace: str, operator_crds: None
) -> Cluster:
    return Cluster(kube_clients[REGION], k8s_namespace)


@dataclass
class OperatorProcess:
    """One ``chaosaa operator`` subprocess."""

    args: list[str]
    env: dict[str, str]
    log: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    def start(self) -> OperatorProcess:
        self.starts += 1
        path = self.log.with_suffix(f".{self.starts}.log")
        self.logs.append(path)
        with path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chaosaa.cli.main", "operator", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO,
            )
        return self

    def healthz(self) -> dict[str, Any] | None:
        import json

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                data: dict[str, Any] = json.loads(r.read())
                return data
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(
                    f"operator exited with {self.proc.returncode}:\n{self.output()[-4000:]}"
                )
            status = self.healthz()
            return bool(status and status.get("ok"))

        wait_for(ready, timeout, "the operator's /healthz")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"operator did not exit within {timeout:g}s of {sig.name}")

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs)


@pytest.fixture
def start_operator(
    control_planes: ControlPlanes, tmp_path: Path, operator_crds: None
) -> Iterator[Callable[..., OperatorProcess]]:
    """``start_operator(namespace, *args, clock=..., kubeconfig=...)`` -> a ready operator."""
    started: list[OperatorProcess] = []

    def start(
        namespace: str,
        *args: str,
        clock: str | None = None,
        kubeconfig: Path | None = None,
        ready: bool = True,
    ) -> OperatorProcess:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOSAA_")}
        env["KUBECONFIG"] = str(kubeconfig or control_planes.kubeconfig)
        if clock:
            env["CHAOSAA_OPERATOR_CLOCK"] = clock
        context = [] if kubeconfig else ["--context", control_planes.context(REGION)]
        op = OperatorProcess(
            args=[
                "-n",
                namespace,
                "--standalone",
                "--metrics-address",
                f"127.0.0.1:{port}",
                "--lease-duration",
                "3",
                *context,
                *args,
            ],
            env=env,
            log=tmp_path / f"operator-{len(started)}",
            port=port,
        )
        started.append(op)
        op.start()
        if ready:
            op.wait_ready()
        return op

    yield start
    for op in started:
        if op.proc is not None and op.proc.poll() is None:
            op.proc.send_signal(signal.SIGKILL)
            op.proc.wait(10)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents and "k8s" in item.keywords:
            # the first k8s test pays for starting the control planes (its own deadline)
            marker = item.get_closest_marker("timeout")
            if marker is not None and not marker.kwargs.get("func_only"):
                item.add_marker(pytest.mark.timeout(*marker.args, func_only=True))
