"""spec.traffic: load profiles and probes as a user writes them, errors that name the
field, the documented examples, the plan, and the capacity check."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from click.testing import CliRunner

from chaosaa.cli.main import cli
from chaosaa.errors import SpecError
from chaosaa.spec.loader import load_gameday_text
from chaosaa.spec.traffic import HttpProbe, KvProbe, Traffic
from chaosaa.traffic import TrafficCapacityError, TrafficGenerator, capacity, load_plan

BASE = """\
apiVersion: chaosaa.io/v1alpha1
kind: GameDay
metadata: {name: load}
spec:
  target: {kind: lab, regions: {us: {}, eu: {}, ap: {}}}
  traffic:
%s
  faults:
    - {name: eu-dark, type: blackhole, regions: [eu], after: 10s, duration: 30s}
  slos:
    - {name: failover, type: failoverTime, max: 30s}
"""


def gameday_text(traffic: str) -> str:
    return BASE % textwrap.indent(textwrap.dedent(traffic).strip("\n"), "    ")


def problems(traffic: str) -> str:
    with pytest.raises(SpecError) as err:
        load_gameday_text(gameday_text(traffic), "load.yaml")
    return str(err.value)


def test_old_rate_and_homes_still_mean_one_shared_rate() -> None:
    gd = load_gameday_text(gameday_text("rate: 90\nhomes: [us, eu]"), "load.yaml")
    plan = load_plan(gd.spec.traffic, list(gd.spec.target.regions))
    assert plan.rate_by_home(0) == {"us": 45, "eu": 45}
    assert isinstance(gd.spec.traffic.probe, KvProbe)


def test_a_rate_per_region_with_stages() -> None:
    gd = load_gameday_text(
        gameday_text(
            """
            load:
              us: {rate: 100}
              eu: {rate: 100}
              ap:
                rate: 100
                stages:
                  - {type: ramp, to: 500, duration: 20s}
                  - {type: step, to: 200, steps: 3, duration: 30s}
            """
        ),
        "load.yaml",
    )
    plan = load_plan(gd.spec.traffic, list(gd.spec.target.regions))
    assert plan.rate_by_home(10) == {"us": 100, "eu": 100, "ap": 300}
    assert plan.rate_by_home(25)["ap"] == pytest.approx(400)  # 500 -> 400 -> 300 -> 200
    assert plan.peak_rate == 700


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        ("load: {us: {}}", "spec.traffic.load.us: give a rate > 0 or stages"),
        ("load: {xx: {rate: 5}}", "spec.traffic.load.xx: region 'xx' not in target.regions"),
        ("rate: 5\nload: {us: {rate: 5}}", "spec.traffic: give either load"),
        ("stages: [{type: ramp, duration: 5s}]", "spec.traffic.stages[0].to: required"),
        ("stages: [{type: step, to: 5, duration: 5s}]", "spec.traffic.stages[0].steps"),
        ("stages: [{type: wobble, duration: 5s}]", "spec.traffic.stages[0]"),
        ("load: {us: {rate: -1}}", "spec.traffic.load.us.rate"),
        ("probe: {type: http, bogus: 1}", "spec.traffic.probe.bogus: unknown field"),
        ("probe: {type: http, path: health}", "spec.traffic.probe.path"),
        ("probe: {type: http, expectStatus: [503]}", "spec.traffic.probe.expectStatus[0]"),
        ("probe: {type: http, bodyMatches: '('}", "spec.traffic.probe.bodyMatches"),
        ("probe: {type: http, url: ftp://x}", "spec.traffic.probe.url"),
        (
            "probe: {type: http, endpoints: {xx: 'http://127.0.0.1:1'}}",
            "spec.traffic.probe.endpoints.xx: region 'xx' not in target.regions",
        ),
        ("probe: {type: http}\nwriteRatio: 0.5", "writeRatio applies to the kv probe only"),
        ("probe: {type: http, method: GET, body: x}", "a GET request carries no body"),
    ],
)
def test_invalid_traffic_names_the_field(traffic: str, message: str) -> None:
    assert message in problems(traffic)


def test_lost_writes_needs_the_kv_probe() -> None:
    text = gameday_text("probe: {type: http}").replace(
        "max: 30s}", "max: 30s}\n    - {name: lw, type: lostWrites}"
    )
    with pytest.raises(SpecError, match=r"spec\.slos\[1\]: lostWrites needs the kv probe"):
        load_gameday_text(text, "load.yaml")


@pytest.mark.parametrize("model", [Traffic, HttpProbe])
def test_the_documented_examples_are_valid(model: type[Traffic | HttpProbe]) -> None:
    for doc in yaml.safe_load_all(model.EXAMPLE):
        traffic = Traffic.model_validate(doc["traffic"])
        assert load_plan(traffic, ["us", "eu", "ap"]).peak_rate > 0


def test_plan_shows_the_load_profile_and_the_probe(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    path = tmp_path / "load.yaml"
    path.write_text(
        gameday_text(
            """
            load:
              us: {rate: 100}
              ap: {stages: [{type: ramp, from: 50, to: 250, duration: 20s}]}
            probe: {type: http, path: /health, regionHeader: X-Served-By}
            """
        )
    )
    result = CliRunner().invoke(cli, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "peak 350 req/s" in out
    assert "us: 100 req/s" in out
    assert "ap: 50->250 req/s (t=0s-20s), then 250 req/s until the end" in out
    assert "http probe GET /health" in out and "X-Served-By" in out


def test_a_peak_beyond_what_the_cores_send_is_refused_naming_the_field() -> None:
    with pytest.raises(TrafficCapacityError, match=r"spec\.traffic: a peak of"):
        TrafficGenerator("http://127.0.0.1:1", rate=capacity() * 1.5, timeout=1, run_id="r")
    assert TrafficGenerator("http://127.0.0.1:1", rate=capacity(), timeout=1, run_id="r")
