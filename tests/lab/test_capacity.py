"""Service capacity of the lab's regions: a node serves ``concurrency`` requests at once
for ``serviceTime`` each, queues ``queue`` more and refuses the rest with 503; open-loop
load above the ceiling saturates it, below it does not; a run's capacity lasts while it
holds the lease; ``lab up --capacity`` sets the lab's own."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from chaosaa.cli.lab import parse_capacity_options
from chaosaa.cli.main import cli
from chaosaa.measure import error_rate, latency
from chaosaa.spec.model import Target as TargetSpec
from chaosaa.targets.base import TargetOptions, target_for
from chaosaa.traffic import TrafficGenerator
from tests.lab.fixtures import Lab, call, metric, request, scrape

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]


def set_capacity(lab: Lab, holder: str | None = None, **regions: Any) -> dict[str, Any]:
    code, body = call("PUT", f"{lab.supervisor}/capacity", {"regions": regions, "holder": holder})
    assert code == 200, body
    assert isinstance(body, dict)
    return body


def node_capacity(lab: Lab, region: str) -> dict[str, Any]:
    code, body = call("GET", f"{lab.node(region)}/internal/capacity")
    assert code == 200 and isinstance(body, dict)
    return body


def test_a_full_region_serves_its_workers_queues_some_and_refuses_the_rest(
    clean_lab: Lab,
) -> None:
    set_capacity(clean_lab, us={"concurrency": 2, "serviceTime": "200ms", "queue": 2})
    url = f"{clean_lab.node('us')}/kv/capacity-burst"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _timed_put(url), range(8)))
    codes = sorted(code for code, _ in answers)
    assert codes == [200] * 4 + [503] * 4, answers
    served = sorted(seconds for code, seconds in answers if code == 200)
    # two at once for 200 ms, then the two that waited for them
    assert served[0] >= 0.2 and served[-1] >= 0.4, served
    refused = [seconds for code, seconds in answers if code == 503]
    assert max(refused) < 0.2, "a refusal is immediate, it does not wait for a worker"
    text = scrape(clean_lab.node("us"))
    assert metric(text, "chaosaa_demo_rejected_total", region="us") == 4
    assert metric(text, "chaosaa_demo_capacity_requests_per_second", region="us") == 10
    assert metric(text, "chaosaa_demo_capacity_queue_limit", region="us") == 2
    assert (metric(text, "chaosaa_demo_requests_total", region="us", method="PUT", code="503")) == 4
    # eu is not limited
    assert metric(scrape(clean_lab.node("eu")), "chaosaa_demo_capacity_concurrency") == float("inf")


def _timed_put(url: str) -> tuple[int, float]:
    started = time.monotonic()
    status, _, _ = request("PUT", url, b"x", timeout=5)
    return status, time.monotonic() - started


@pytest.mark.parametrize(
    ("rate", "saturated"),
    [(60.0, False), (120.0, True)],
    ids=["below-the-ceiling", "above-the-ceiling"],
)
def test_open_loop_load_saturates_a_region_only_above_its_ceiling(
    clean_lab: Lab, rate: float, saturated: bool
) -> None:
    # 4 workers x 50 ms = 80 req/s; a queue of 8 waits at most 100 ms more
    set_capacity(clean_lab, ap={"concurrency": 4, "serviceTime": "50ms", "queue": 8})
    samples = asyncio.run(_load(clean_lab, "ap", rate, seconds=6.0))
    start, end = samples[0].sent_at + 1.0, samples[-1].sent_at
    errors = error_rate(samples, start, end).measured
    p50 = latency(samples, start, end, objective=0.5).measured
    assert errors is not None and p50 is not None
    if saturated:
        # a third of 120 req/s is beyond 80 req/s: refused; the rest waited in the queue
        assert 0.2 < errors < 0.45, errors
        assert p50 > 0.1, p50
    else:
        assert errors < 0.01, errors
        assert 0.05 <= p50 < 0.1, p50


async def _load(lab: Lab, region: str, rate: float, seconds: float) -> list[Any]:
    gen = TrafficGenerator(
        None,
        rate=rate,
        write_ratio=0.0,
        timeout=2.0,
        homes=[region],
        run_id="capacity",
        region_urls={region: lab.node(region)},
        workers=0,
    )
    await gen.run(seconds)
    return gen.samples()


def test_a_runs_capacity_lasts_while_it_holds_the_lease(clean_lab: Lab) -> None:
    sup = clean_lab.supervisor
    code, _ = call("PUT", f"{sup}/capacity", {"holder": "run-x", "regions": {}})
    assert code == 409, "only the lease holder sets a run's capacity"
    assert call("POST", f"{sup}/lease", {"holder": "run-x", "ttl": 1.5})[0] == 200
    state = set_capacity(clean_lab, "run-x", eu={"concurrency": 3, "serviceTime": "10ms"})
    assert state["holder"] == "run-x"
    assert node_capacity(clean_lab, "eu")["capacity"]["concurrency"] == 3
    # the lease lapses (a killed run): the lab's own capacity comes back by itself
    deadline = time.monotonic() + 5
    while node_capacity(clean_lab, "eu")["capacity"]["concurrency"] is not None:
        assert time.monotonic() < deadline, "capacity not restored after the lease lapsed"
        time.sleep(0.1)
    assert call("GET", f"{sup}/capacity")[1]["holder"] is None
    # released: back at once
    assert call("POST", f"{sup}/lease", {"holder": "run-y", "ttl": 30})[0] == 200
    set_capacity(clean_lab, "run-y", us={"concurrency": 1})
    assert call("DELETE", f"{sup}/lease?holder=run-y")[0] == 200
    deadline = time.monotonic() + 3
    while node_capacity(clean_lab, "us")["capacity"]["concurrency"] is not None:
        assert time.monotonic() < deadline, "capacity not restored after the lease was released"
        time.sleep(0.05)


def test_bad_capacity_is_refused_naming_the_field(clean_lab: Lab) -> None:
    url = f"{clean_lab.supervisor}/capacity"
    code, body = call("PUT", url, {"regions": {"us": {"workers": 2}}})
    assert code == 400 and "unknown field(s) workers" in body["error"]
    code, body = call("PUT", url, {"regions": {"mars": {}}})
    assert code == 400 and "unknown region(s) mars" in body["error"]
    code, body = call("PUT", f"{clean_lab.node('us')}/internal/capacity", {"serviceTime": "soon"})
    assert code == 400 and b"serviceTime" in body


async def test_the_lab_target_sets_the_gamedays_capacity_with_its_lease(clean_lab: Lab) -> None:
    spec = TargetSpec.model_validate(
        {
            "kind": "lab",
            "regions": {"us": {}, "eu": {}, "ap": {"capacity": {"concurrency": 2}}},
            "lab": {"capacity": {"concurrency": 4, "serviceTime": "25ms", "queue": 8}},
        }
    )
    t = target_for(spec, TargetOptions(run_id="cap-run", state_dir=str(clean_lab.state_dir)))
    assert t.settings() == [
        "capacity of us: 4 workers x 25ms = 160 req/s, queue 8",
        "capacity of eu: 4 workers x 25ms = 160 req/s, queue 8",
        "capacity of ap: 2 workers x 25ms = 80 req/s, queue 8",
    ]
    await t.open()
    try:
        await t.acquire_lease("cap-run", 10)
        ap = node_capacity(clean_lab, "ap")["capacity"]
        assert ap == {"concurrency": 2, "serviceTime": "25ms", "queue": 8, "ceiling": 80.0}
        await t.renew_lease("cap-run", 10)
        events = await t.events(0)
        assert [e.event for e in events if e.event == "capacity"] == ["capacity"]
        await t.release_lease("cap-run")
        deadline = time.monotonic() + 3
        while node_capacity(clean_lab, "ap")["capacity"]["concurrency"] is not None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await t.close()


def test_lab_up_capacity_options() -> None:
    parsed = parse_capacity_options(
        ("concurrency=4,serviceTime=25ms,queue=8", "ap:concurrency=2", "eu:queue=none"),
        ["us", "eu", "ap"],
    )
    assert parsed == {
        "us": {"concurrency": 4, "serviceTime": "25ms", "queue": 8},
        "eu": {"concurrency": 4, "serviceTime": "25ms", "queue": None},
        "ap": {"concurrency": 2, "serviceTime": "25ms", "queue": 8},
    }
    assert parse_capacity_options((), ["us"]) == {}


def test_lab_up_refuses_a_bad_capacity_before_starting_anything(tmp_path: Path) -> None:
    state = tmp_path / "lab"
    result = CliRunner().invoke(
        cli, ["lab", "up", "--state-dir", str(state), "--capacity", "concurrency=0"]
    )
    assert result.exit_code == 2, result.output
    assert "--capacity us: concurrency must be an integer from 1" in result.output
    result = CliRunner().invoke(
        cli, ["lab", "up", "--state-dir", str(state), "--capacity", "mars:queue=1"]
    )
    assert result.exit_code == 2 and "region(s) mars not in the lab" in result.output
    assert not (state / "lab.json").exists()
