"""What the run says and checks about its traffic before any fault: the phase names the
load profile's peak and the probe; an http probe with its own address needs no entry
point from the target; canary lag is left out with an http probe."""

from __future__ import annotations

import textwrap
from pathlib import Path

from click.testing import CliRunner

from chaosaa.cli.main import cli
from chaosaa.engine.run import probe_has_own_address, traffic_phase_detail
from chaosaa.spec.checks import canary_applies
from chaosaa.spec.loader import load_gameday_text
from chaosaa.spec.model import GameDay

BASE = """\
apiVersion: chaosaa.io/v1alpha1
kind: GameDay
metadata: {name: probe}
spec:
  target: {kind: lab, regions: {us: {}, eu: {}}}
  traffic:
%s
  faults:
    - {name: cut, type: blackhole, partition: [[us], [eu]], after: 1s, duration: 5s}
  slos:
    - {name: lag, type: replicationLag, max: 10s}
"""


def gameday(traffic: str) -> GameDay:
    body = textwrap.indent(textwrap.dedent(traffic).strip("\n"), "    ")
    return load_gameday_text(BASE % body, "probe.yaml")


def test_the_traffic_phase_names_the_profile_peak_not_the_start_rate() -> None:
    gd = gameday(
        """
        load:
          us: {rate: 10, stages: [{type: ramp, to: 400, duration: 10s}]}
          eu: {rate: 20}
        """
    )
    detail = traffic_phase_detail(gd.spec, 420.0, "http://router")
    assert detail == "open loop, peak 420 req/s, 30% writes to http://router"


def test_an_http_probe_is_named_with_its_own_url() -> None:
    gd = gameday(
        """
        rate: 20
        probe: {type: http, path: /health, url: "http://shop.example"}
        """
    )
    assert probe_has_own_address(gd.spec)
    detail = traffic_phase_detail(gd.spec, 20.0, None)
    assert detail == "open loop, peak 20 req/s, http GET /health to http://shop.example"


def test_a_probe_without_an_address_of_its_own_needs_the_targets() -> None:
    assert not probe_has_own_address(gameday("rate: 20").spec)
    assert not probe_has_own_address(gameday("probe: {type: http}").spec)
    assert probe_has_own_address(
        gameday(
            'probe: {type: http, via: regions, endpoints: {us: "http://u", eu: "http://e"}}'
        ).spec
    )


def test_canary_lag_needs_the_kv_probe_and_the_plan_says_so(tmp_path: Path) -> None:
    kv = gameday("rate: 20")
    http = gameday('probe: {type: http, url: "http://shop.example"}')
    assert canary_applies(kv.spec) and not canary_applies(http.spec)
    path = tmp_path / "probe.yaml"
    path.write_text(BASE % '    probe: {type: http, url: "http://shop.example"}')
    out = CliRunner().invoke(cli, ["plan", str(path)]).output
    assert "canary writes across regions (skipped: they need the kv probe)" in out
