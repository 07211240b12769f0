"""Benchmark: the operator with N GameDays (default 500) on one real kube-apiserver.

Goals: operator RSS <= 200 MB; each scheduled run created within 1 s of its slot.

1. One control plane (tests/k8s/controlplane.py), the CRDs, N GameDays on a yearly
   schedule; `chaosaa operator` as a subprocess (real clock).
2. Idle: RSS and CPU of the operator process over IDLE_SECONDS once every GameDay has
   its status.nextScheduleTime.
3. A, the worst case: every GameDay switched to "* * * * *", so all N fire in the same
   second, for BURSTS minutes. B: every GameDay every ten minutes at ten different
   offsets ("3-59/10 * * * *"), so N/10 fire each minute, for BURSTS minutes.
   Delay of a run = when our watch saw it ADDED - its slot (spec.scheduledTime): an upper
   bound of the creation delay (it includes watch delivery). The operator's own
   histogram (chaosaa_schedule_delay_seconds) is shown too.
   The runs target a lab that is not running, so each one fails in preflight within
   milliseconds: the benchmark measures the operator (firing, executing, recording,
   pruning), not a GameDay.
Usage: python bench/operator.py [N] [BURSTS]
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client as k8s
from kubernetes import watch

from tests.k8s.controlplane import ControlPlanes, find_bin_dir, missing_binaries

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION, NS = "chaosaa.io", "v1alpha1", "bench"
RSS_GOAL_MB = 200
DELAY_GOAL = 1.0
IDLE_SECONDS = 30
CLK_TCK = os.sysconf("SC_CLK_TCK")


def spec(schedule: str) -> dict[str, Any]:
    return {
        "target": {"kind": "lab", "regions": {"us": {}, "eu": {}}},
        "faults": [{"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "5s"}],
        "slos": [{"name": "errors", "type": "errorRate", "max": 0.5}],
        "schedule": schedule,
    }


def proc_stats(pid: int) -> tuple[float, float, float]:
    """(cpu seconds, rss MB, peak rss MB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return cpu, int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def wait(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def histogram(metrics: str) -> dict[str, float]:
    out = {}
    for line in metrics.splitlines():
        if line.startswith("chaosaa_schedule_delay_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out[le] = float(line.rsplit(" ", 1)[1])
    return out


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    bursts = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    bin_dir = find_bin_dir()
    if missing := missing_binaries(bin_dir):
        print(f"skipped: Kubernetes binaries missing in {bin_dir}: {missing} (make k8s-bin)")
        return 0
    with (
        ControlPlanes(bin_dir, ["us"], nodes_per_region=1) as planes,
        tempfile.TemporaryDirectory() as tmp,
    ):
        api = planes.api_client("us")
        subprocess.run(
            [
                str(bin_dir / "kubectl"),
                "--kubeconfig",
                str(planes.kubeconfig),
                "apply",
                "--server-side",
                "-f",
                str(REPO / "charts/chaosaa/crds"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [
                str(bin_dir / "kubectl"),
                "--kubeconfig",
                str(planes.kubeconfig),
                "wait",
                "--for=condition=Established",
                "crd/gamedays.chaosaa.io",
                "crd/gamedayruns.chaosaa.io",
                "--timeout=60s",
            ],
            check=True,
            capture_output=True,
            timeout=70,
        )
        k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=NS)))
        custom = k8s.CustomObjectsApi(api)
        names = [f"gd-{i:04d}" for i in range(n)]

        def create(name: str) -> None:
            custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                NS,
                "gamedays",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "GameDay",
                    "metadata": {"name": name},
                    "spec": spec("0 0 1 1 *"),
                },
                _request_timeout=30,
            )

        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, names))
        created_in = time.monotonic() - t0

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOSAA_")}
        env["KUBECONFIG"] = str(planes.kubeconfig)
        log = Path(tmp) / "operator.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "chaosaa.cli.main",
                    "operator",
                    "-n",
                    NS,
                    "--standalone",
                    "--metrics-address",
                    f"127.0.0.1:{port}",
                    "--lab-state",
                    f"{tmp}/no-lab",
                    "--log-format",
                    "plain",
                    "-q",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )
        try:
            started = time.monotonic()

            def all_scheduled() -> bool:
                items = custom.list_namespaced_custom_object(GROUP, VERSION, NS, "gamedays")
                return (
                    sum(
                        1 for g in items["items"] if (g.get("status") or {}).get("nextScheduleTime")
                    )
                    == n
                )

            wait(all_scheduled, 300, f"{n} GameDays with status.nextScheduleTime")
            startup = time.monotonic() - started
            time.sleep(5)
            cpu0, _, _ = proc_stats(proc.pid)
            time.sleep(IDLE_SECONDS)
            cpu1, rss_idle, _ = proc_stats(proc.pid)
            idle_cpu = (cpu1 - cpu0) / IDLE_SECONDS * 100

            # watch the runs as they appear
            seen: dict[str, float] = {}
            slots: dict[str, float] = {}
            stop = threading.Event()

            def watcher() -> None:
                w = watch.Watch()
                while not stop.is_set():
                    for ev in w.stream(
                        custom.list_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        NS,
                        "gamedayruns",
                        timeout_seconds=5,
                    ):
                        at = time.time()
                        if ev["type"] == "ADDED":
                            name = ev["object"]["metadata"]["name"]
                            if name not in seen:
                                seen[name] = at
                                slot = ev["object"]["spec"].get("scheduledTime")
                                if slot:
                                    slots[name] = datetime.fromisoformat(
                                        slot.replace("Z", "+00:00")
                                    ).timestamp()

            thread = threading.Thread(target=watcher, daemon=True)
            thread.start()
            time.sleep(1)

            def reschedule(schedule_of: Any) -> float:
                """New schedules for every GameDay; returns the first slot after it."""
                # early in a minute: done well before the next slot
                while not 2 < time.time() % 60 < 20:
                    time.sleep(1)
                with ThreadPoolExecutor(8) as pool:
                    list(
                        pool.map(
                            lambda i: custom.patch_namespaced_custom_object(
                                GROUP,
                                VERSION,
                                NS,
                                "gamedays",
                                names[i],
                                {"spec": {"schedule": schedule_of(i)}},
                                _content_type="application/merge-patch+json",
                                _request_timeout=30,
                            ),
                            range(n),
                        )
                    )
                return float((int(time.time()) // 60 + 1) * 60)

            # A: every GameDay every minute: all N fire in the same second
            first_slot = reschedule(lambda i: "* * * * *")
            cpu_b0, _, _ = proc_stats(proc.pid)
            burst_start = time.time()
            wait(
                lambda: time.time() > first_slot + 60 * (bursts - 1) + 45,
                60 * bursts + 120,
                "the bursts",
            )
            cpu_b1, _, rss_peak = proc_stats(proc.pid)
            burst_cpu = (cpu_b1 - cpu_b0) / (time.time() - burst_start) * 100
            # B: every GameDay every ten minutes, at ten different offsets: N/10 per minute
            spread_first = reschedule(lambda i: f"{i % 10}-59/10 * * * *")
            wait(
                lambda: time.time() > spread_first + 60 * (bursts - 1) + 45,
                60 * bursts + 120,
                "the spread slots",
            )
            _, _, rss_peak = proc_stats(proc.pid)
            stop.set()
            thread.join(10)
            metrics = get(f"http://127.0.0.1:{port}/metrics")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log_tail = log.read_text(errors="replace")[-1500:]
        delays = [seen[name] - slots[name] for name in slots if slots[name] < spread_first]
        spread = [seen[name] - slots[name] for name in slots if slots[name] >= spread_first]
        per_slot: dict[float, int] = {}
        for name in slots:
            per_slot[slots[name]] = per_slot.get(slots[name], 0) + 1
        runs_total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("chaosaa_runs_total{")
        )
        hist = histogram(metrics)
        within = hist.get("1.0", 0.0) / hist["+Inf"] if hist.get("+Inf") else 0.0

    print(
        f"\n{n} GameDays, 1 kube-apiserver (+etcd) on {platform.node()} "
        f"({os.cpu_count()} cores shared), Python {platform.python_version()}\n"
    )
    print("| measure | value | goal |")
    print("|---|---|---|")
    print(f"| create {n} GameDays (8 client threads) | {created_in:.1f} s | |")
    print(f"| operator start → every GameDay has nextScheduleTime | {startup:.1f} s | |")
    print(f"| RSS idle | {rss_idle:.0f} MB | ≤ {RSS_GOAL_MB} MB |")
    print(f"| RSS peak (VmHWM, whole run) | {rss_peak:.0f} MB | ≤ {RSS_GOAL_MB} MB |")
    print(f"| CPU idle ({IDLE_SECONDS} s, {n} GameDays) | {idle_cpu:.1f} % of a core | |")
    print(f"| CPU during bursts | {burst_cpu:.0f} % of a core | |")
    print(f"| runs per slot (slots seen) | {[per_slot[k] for k in sorted(per_slot)]} | |")
    print(f"| runs finished (chaosaa_runs_total) | {runs_total:.0f} | |")
    if delays:
        print(
            f"| A: all {n} in one slot: created after the slot (watch): p50 / p95 / p99 / max | "
            f"{statistics.median(delays):.2f} / {pct(delays, 95):.2f} / {pct(delays, 99):.2f}"
            f" / {max(delays):.2f} s | ≤ {DELAY_GOAL:g} s |"
        )
        print(
            f"| A: share created within 1 s (watch) | "
            f"{sum(d <= DELAY_GOAL for d in delays) / len(delays):.1%} | 100 % |"
        )
    if spread:
        print(
            f"| B: {n // 10} GameDays per slot: created after the slot (watch): "
            f"p50 / p95 / max | {statistics.median(spread):.2f} / {pct(spread, 95):.2f} / "
            f"{max(spread):.2f} s | ≤ {DELAY_GOAL:g} s |"
        )
    print(f"| all runs created within 1 s (operator histogram, A and B) | {within:.1%} | |")
    if proc.returncode != 0:
        print(f"\noperator exited with {proc.returncode}; log (tail):\n{log_tail}")
    ok = rss_peak <= RSS_GOAL_MB and bool(spread) and max(spread) <= DELAY_GOAL
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
