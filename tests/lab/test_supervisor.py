"""The lab as a whole: lifecycle, status, Prometheus, the fault API and its dead-man switch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from chaosaa.lab import control
from tests.conftest import require_binary
from tests.lab.fixtures import Lab, call, processes_mentioning, request, wait_until

pytestmark = pytest.mark.lab

CLI = [sys.executable, "-m", "chaosaa.cli.lab"]


def _listeners() -> dict[int, set[str]]:
    """Listening TCP port -> socket inodes, from /proc/net/tcp{,6}."""
    out: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    out.setdefault(int(fields[1].rsplit(":", 1)[1], 16), set()).add(fields[9])
    return out


def _listening_ports() -> set[int]:
    return set(_listeners())


def _owners(inodes: set[str]) -> set[int]:
    wanted = {f"socket:[{i}]" for i in inodes}
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in wanted for fd in fds):
                pids.add(int(entry))
        except OSError:
            continue
    return pids


def _leaked_ports(ports: set[int], ours: set[int], state: Path) -> set[int]:
    """Our ports still listening in one of our processes or in any process of this lab.
    (Another lab on this machine may legitimately re-bind a freed ephemeral port.)"""
    listeners = _listeners()
    lab_pids = ours | set(processes_mentioning(str(state)))
    leaked = set()
    for port in ports & set(listeners):
        owners = _owners(listeners[port])
        if not owners or owners & lab_pids:
            leaked.add(port)
    return leaked


def _ports_of(status: dict[str, Any]) -> set[int]:
    urls = [status["supervisor"], status["router"], status["prometheus"], status["proxy"]["admin"]]
    urls += [r["nodeUrl"] for r in status["regions"].values()]
    urls += [link["url"] for link in status["links"].values()]
    return {int(urllib.parse.urlsplit(u).port or 0) for u in urls}


def test_status_json_shape(clean_lab: Lab) -> None:
    result = subprocess.run(
        [*CLI, "status", "--state-dir", str(clean_lab.state_dir), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    st = json.loads(result.stdout)
    assert st["router"].startswith("http://127.0.0.1:")
    assert st["prometheus"].startswith("http://127.0.0.1:")
    assert st["supervisor"].startswith("http://127.0.0.1:")
    assert st["proxy"]["admin"].startswith("http://127.0.0.1:")
    assert Path(st["routerEvents"]["path"]).exists()
    assert st["faults"] == [] and st["phase"] == "ready" and st["healthy"] is True
    assert set(st["regions"]) == {"us", "eu", "ap"}
    for region in st["regions"].values():
        assert region["healthy"] is True
        assert region["url"] != region["nodeUrl"]
    assert set(st["links"]) == {
        "router>us",
        "router>eu",
        "router>ap",
        "us>eu",
        "us>ap",
        "eu>us",
        "eu>ap",
        "ap>us",
        "ap>eu",
    }


def test_prometheus_scrapes_every_component(clean_lab: Lab) -> None:
    for _ in range(5):
        request("PUT", f"{clean_lab.router}/kv/prom", b"1", headers={"X-Chaosaa-Home": "ap"})

    def query(q: str) -> list[dict[str, Any]]:
        url = f"{clean_lab.prometheus}/api/v1/query?query={urllib.parse.quote(q)}"
        status, body = call("GET", url)
        assert status == 200 and body["status"] == "success"
        return list(body["data"]["result"])

    wait_until(lambda: len(query('up{job=~"chaosaa-.*"} == 1')) == 6, 10, what="6 targets up")
    wait_until(
        lambda: query('chaosaa_demo_requests_total{region="ap",method="PUT",code="200"}'),
        10,
        what="node request metrics in Prometheus",
    )
    lag = query("chaosaa_demo_replication_lag_seconds")
    assert {(s["metric"]["source"], s["metric"]["target"]) for s in lag} == {
        (a, b) for a in ("us", "eu", "ap") for b in ("us", "eu", "ap") if a != b
    }
    wait_until(
        lambda: query('chaosaa_router_requests_total{home="ap",served_by="ap"}'),
        10,
        what="router metrics",
    )
    assert query("chaosaa_proxy_bytes_total")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"type": "blackhole", "regions": ["mars"]}, "unknown region"),
        ({"type": "latency", "regions": ["eu"]}, "delay"),
        ({"type": "blackhole"}, "exactly one of"),
        ({"type": "explode", "regions": ["eu"]}, "type"),
        ({"type": "blackhole", "regions": ["eu"], "ttl": "forever"}, "ttl"),
        ({"type": "blackhole", "regions": ["eu"], "colour": "red"}, "colour"),
    ],
)
def test_fault_api_rejects_invalid_requests(
    clean_lab: Lab, body: dict[str, Any], needle: str
) -> None:
    status, resp = call("POST", f"{clean_lab.supervisor}/faults", body)
    assert status == 400
    assert needle in resp["error"]
    assert clean_lab.live_status()["faults"] == []


def test_fault_lifecycle_inject_verify_renew_revert(clean_lab: Lab) -> None:
    lab = clean_lab
    fault = lab.inject(id="bh-eu", type="blackhole", regions=["eu"], ttl=3)
    _, verify = call("GET", f"{lab.supervisor}/faults/bh-eu/verify")
    assert verify["verified"] and verify["state"] == "active"
    assert any(c["check"] == "link router>eu cut" for c in verify["checks"])
    _, listed = call("GET", f"{lab.supervisor}/faults")
    assert [f["id"] for f in listed["faults"]] == ["bh-eu"] and fault["expiresAt"]
    time.sleep(2)
    status, renewed = call("POST", f"{lab.supervisor}/faults/bh-eu/renew", {"ttl": 3})
    assert status == 200 and renewed["expiresIn"] > 2.5
    time.sleep(1.5)  # past the original expiry: still active because it was renewed
    assert [f["id"] for f in lab.live_status()["faults"]] == ["bh-eu"]
    assert (
        call(
            "POST",
            f"{lab.supervisor}/faults",
            {"id": "bh-eu", "type": "blackhole", "regions": ["eu"]},
        )[0]
        == 409
    )
    lab.revert("bh-eu")
    _, verify = call("GET", f"{lab.supervisor}/faults/bh-eu/verify")
    assert verify["state"] == "reverted" and verify["verified"], verify
    assert request("GET", f"{lab.region_url('eu')}/healthz")[0] == 200


def test_verify_fails_when_the_proxy_no_longer_applies_the_condition(clean_lab: Lab) -> None:
    lab = clean_lab
    lab.inject(id="bh-lost", type="blackhole", regions=["eu"], ttl=10)
    _, verify = call("GET", f"{lab.supervisor}/faults/bh-lost/verify")
    assert verify["verified"], verify
    # Remove the link condition behind the supervisor's back: the fault is still "active"
    # in its books, but nothing cuts the links any more.
    assert call("DELETE", f"{lab.proxy}/conditions/bh-lost.0")[0] == 200
    _, verify = call("GET", f"{lab.supervisor}/faults/bh-lost/verify")
    assert verify["state"] == "active" and not verify["verified"]
    checks = {c["check"]: c for c in verify["checks"]}
    assert checks["condition bh-lost.0 (blackhole) in effect on every target"]["ok"] is False
    assert checks["link router>eu cut"]["probe"]["outcome"] == "answered"
    lab.revert("bh-lost")


def test_region_down_stops_and_resumes_the_node_process(clean_lab: Lab) -> None:
    lab = clean_lab
    pid = lab.live_status()["regions"]["ap"]["pid"]
    lab.inject(id="ap-down", type="regionDown", regions=["ap"], ttl=10)
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    assert state == "T"
    assert call("GET", f"{lab.supervisor}/faults/ap-down/verify")[1]["verified"]
    lab.revert("ap-down")
    assert request("GET", f"{lab.node('ap')}/healthz")[0] == 200
    assert call("GET", f"{lab.supervisor}/faults/ap-down/verify")[1]["verified"]


def test_latency_fault_is_verified_by_a_measured_round_trip(clean_lab: Lab) -> None:
    lab = clean_lab
    lab.inject(id="slow-ap", type="latency", regions=["ap"], delay="150ms", clients=True, ttl=10)
    _, verify = call("GET", f"{lab.supervisor}/faults/slow-ap/verify")
    assert verify["verified"], verify
    started = time.monotonic()
    assert request("GET", f"{lab.region_url('ap')}/healthz")[0] == 200
    assert time.monotonic() - started >= 0.15


def test_blackhole_reverts_itself_when_the_runner_is_killed(clean_lab: Lab) -> None:
    lab = clean_lab
    script = textwrap.dedent(
        f"""
        import json, time, urllib.request
        req = urllib.request.Request({lab.supervisor + "/faults"!r}, method="POST",
            data=json.dumps({{"type": "blackhole", "regions": ["eu"], "ttl": "3s"}}).encode(),
            headers={{"Content-Type": "application/json"}})
        print(json.load(urllib.request.urlopen(req, timeout=5))["id"], flush=True)
        time.sleep(60)
        """
    )
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        fault_id = runner.stdout.readline().strip()
        assert fault_id
        killed_at = time.monotonic()
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=5)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if runner.stdout:
            runner.stdout.close()
    # The fault is in place after the runner died ...
    assert call("GET", f"{lab.supervisor}/faults/{fault_id}/verify")[1]["verified"]
    # ... and nobody reverts it: the lab heals by itself within the TTL.
    wait_until(lambda: lab.live_status()["faults"] == [], 5, 0.1, "fault expired")
    assert time.monotonic() - killed_at <= 3.0 + 1.0
    assert request("GET", f"{lab.region_url('eu')}/healthz", timeout=2)[0] == 200
    _, conds = call("GET", f"{lab.proxy}/conditions")
    assert conds["conditions"] == []
    wait_until(
        lambda: (
            request("GET", f"{lab.router}/kv/x", headers={"X-Chaosaa-Home": "eu"})[2][
                "X-Chaosaa-Region"
            ]
            == "eu"
        ),
        10,
        what="eu traffic served by eu again",
    )


def test_up_then_down_leaves_no_process_port_or_lock(tmp_path: Path) -> None:
    require_binary("prometheus", "apt-get install prometheus")
    state = tmp_path / "lifecycle"
    up = subprocess.run(
        [*CLI, "up", "--regions", "us,eu", "--state-dir", str(state), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert up.returncode == 0, up.stderr
        status = json.loads(up.stdout)
        assert set(status["regions"]) == {"us", "eu"}
        ports = _ports_of(status)
        assert ports <= _listening_ports()
        ours = set(processes_mentioning(str(state)))
        assert len(ours) >= 6  # supervisor, 2 nodes, router, proxy, prometheus
        again = subprocess.run(
            [*CLI, "up", "--regions", "us,eu", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 4 and "already running" in again.stderr
    finally:
        down = subprocess.run(
            [*CLI, "down", "--state-dir", str(state)], capture_output=True, text=True, timeout=60
        )
    assert down.returncode == 0, down.stderr
    assert processes_mentioning(str(state)) == []
    assert _leaked_ports(ports, ours, state) == set()
    assert not (state / "lab.lock").exists() and not (state / "lab.json").exists()
    gone = subprocess.run(
        [*CLI, "status", "--state-dir", str(state)], capture_output=True, text=True, timeout=30
    )
    assert gone.returncode == 4 and "no lab is running" in gone.stderr


def test_missing_prometheus_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no prometheus on this PATH
    env.pop("CHAOSAA_PROMETHEUS_BIN", None)
    result = subprocess.run(
        [*CLI, "up", "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 4
    assert "apt-get install prometheus" in result.stderr
    assert processes_mentioning(str(tmp_path / "state")) == []


def test_state_dir_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CHAOSAA_LAB_STATE", str(tmp_path / "from-env"))
    with pytest.raises(control.LabNotRunningError, match="from-env"):
        control.status()


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    require_binary("prometheus", "apt-get install prometheus")
    state = tmp_path / "killed"
    status = control.up(["solo"], state, timeout=90)
    try:
        ours = set(processes_mentioning(str(state)))
        assert len(ours) >= 5  # supervisor, node, router, proxy, prometheus
        os.kill(status["pid"], signal.SIGKILL)
        wait_until(lambda: processes_mentioning(str(state)) == [], 10, what="children gone")
        # A dying process loses its command line before its sockets: poll the ports too.
        ports = _ports_of(status)
        wait_until(lambda: not _leaked_ports(ports, ours, state), 5, what="ports closed")
    finally:
        control.down(state)  # reaps the supervisor and removes the stale files
    assert not (state / "lab.json").exists() and not (state / "lab.lock").exists()
