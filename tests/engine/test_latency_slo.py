"""The latency SLO against the real lab: a latency fault on a region's clients (the link
proxies delay the router's link to it, no netem needed) pushes p99 over its objective and
fails the run; a small one passes. An http probe is judged the same way, and its GameDay
leaves canary lag out (the KV protocol is the kv probe's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.test_experiments import run_gameday, slo
from tests.lab.fixtures import Lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

GAMEDAY = """\
apiVersion: chaosaa.io/v1alpha1
kind: GameDay
metadata: {name: slow-clients}
spec:
  target: {kind: lab, regions: {us: {}, eu: {}, ap: {}}}
  traffic:
    rate: 60
    warmup: 3s
%(probe)s
  faults:
    - name: eu-slow
      type: latency
      regions: [eu]
      clients: true
      delay: 300ms
      after: 1s
      duration: 12s
  slos:
    - {name: p99, type: latency, max: 200ms, fault: eu-slow}
%(more)s
"""


def gameday(tmp_path: Path, probe: str = "", more: str = "") -> Path:
    path = tmp_path / "slow-clients.yaml"
    path.write_text(GAMEDAY % {"probe": probe, "more": more})
    return path


@pytest.mark.parametrize(
    ("delay", "code", "verdict"), [("300ms", 1, "failed"), ("20ms", 0, "passed")]
)
def test_a_latency_fault_on_a_regions_clients_fails_p99_only_when_it_is_over(
    clean_lab: Lab, tmp_path: Path, delay: str, code: int, verdict: str
) -> None:
    path = gameday(tmp_path)
    exit_code, report = run_gameday(
        clean_lab, path, tmp_path / "reports", f"spec.faults.0.delay={delay}"
    )
    p99 = slo(report, "p99")
    assert exit_code == code, (report.get("reason"), p99)
    assert p99["verdict"] == verdict and p99["source"] == "probe"
    assert p99["objective"] == "p99 <= 200ms during eu-slow"
    eu = p99["details"]["byRegion"]["eu"]
    assert eu["samples"] >= 150  # a third of 60 req/s for ~12 s
    assert eu["before"] is not None and eu["before"] < 0.2
    if verdict == "failed":
        # a third of the requests wait 300 ms more: the overall p99 is one of them
        assert p99["measured"] >= 0.3, p99
        assert eu["value"] >= 0.3 and p99["details"]["change"]["99"]["delta"] > 0.2
    else:
        assert p99["measured"] < 0.2, p99
    assert p99["errorBoundSeconds"] is not None


def test_an_http_probes_latency_is_judged_and_canary_lag_left_out(
    clean_lab: Lab, tmp_path: Path
) -> None:
    probe = (
        "    probe: {type: http, path: /kv/http-probe, expectStatus: [200, 404], "
        "regionHeader: X-Chaosaa-Region}"
    )
    lag = "    - {name: lag, type: replicationLag, max: 30s}"
    path = gameday(tmp_path, probe=probe, more=lag)
    exit_code, report = run_gameday(clean_lab, path, tmp_path / "reports")
    assert exit_code == 1, report.get("reason")
    p99 = slo(report, "p99")
    assert p99["verdict"] == "failed" and p99["details"]["byRegion"]["eu"]["value"] >= 0.3
    lag_slo = slo(report, "lag")
    assert lag_slo["verdict"] == "passed"
    assert lag_slo["details"]["canary"].startswith("skipped")
    assert not [e for e in report["timeline"] if e["event"] == "canary"]
    phase = next(e for e in report["timeline"] if e["event"] == "phase.traffic")
    assert phase["detail"]["detail"].startswith("open loop, peak 60 req/s, http GET /kv/http-probe")
