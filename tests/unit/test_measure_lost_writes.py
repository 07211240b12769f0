"""lostWrites: acknowledged and absent, or superseded by an older value (DESIGN.md §4)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaosaa.measure import lost_writes
from chaosaa.model import AckedWrite

pytestmark = pytest.mark.unit

REGIONS = ("us", "eu", "ap")


def w(key: str, seq: int, sent: float, acked: float, region: str = "us") -> AckedWrite:
    return AckedWrite(key=key, value=f"run:{seq}", sent_at=sent, acked_at=acked, region=region)


def everywhere(values: dict[str, str | None]) -> dict[str, dict[str, str | None]]:
    return {r: dict(values) for r in REGIONS}


def test_no_write_is_lost_when_every_region_has_the_last_acknowledged_value() -> None:
    acked = [w("k1", 1, 1.0, 1.1), w("k1", 2, 2.0, 2.1), w("k2", 3, 3.0, 3.1)]
    m = lost_writes(acked, everywhere({"k1": "run:2", "k2": "run:3"}))
    assert m.measured == 0 and m.lost == 0 and not m.no_data
    assert m.acknowledged == 3 and m.unit == "writes" and m.source == "readback"
    assert m.lost_by_region == {"ap": 0, "eu": 0, "us": 0}
    assert m.divergent_keys == 0


def test_an_absent_key_loses_every_acknowledged_write_to_it() -> None:
    acked = [w("k1", 1, 1.0, 1.1), w("k1", 2, 2.0, 2.1), w("k2", 3, 3.0, 3.1)]
    final = everywhere({"k1": "run:2", "k2": "run:3"})
    final["eu"]["k1"] = None
    m = lost_writes(acked, final)
    assert m.lost == 2
    assert m.lost_by_region == {"ap": 0, "eu": 2, "us": 0}
    assert m.details["lossReasons"]["absent"] == 2
    assert m.divergent_keys == 1
    assert m.examples[0]["key"] == "k1" and m.examples[0]["lostIn"] == ["eu"]
    assert m.examples[0]["found"] == {"ap": "run:2", "eu": None, "us": "run:2"}


def test_a_value_acknowledged_before_the_write_was_sent_supersedes_it_as_older() -> None:
    acked = [w("k", 1, 1.0, 1.1), w("k", 2, 2.0, 2.1)]
    m = lost_writes(acked, everywhere({"k": "run:1"}))
    assert m.lost == 1 and m.examples[0]["value"] == "run:2"
    assert m.lost_by_region == {"ap": 1, "eu": 1, "us": 1}  # one write, lost in 3 regions
    assert m.details["lossReasons"]["supersededByOlder"] == 3


def test_concurrent_writes_may_win_over_each_other() -> None:
    # run:2 was sent before run:1 was acknowledged: concurrent, either may win (LWW)
    acked = [w("k", 1, 1.0, 2.5), w("k", 2, 2.0, 2.1)]
    m = lost_writes(acked, everywhere({"k": "run:1"}))
    assert m.lost == 0
    assert m.details["concurrentOverwrites"] == 3


def test_a_value_from_an_unacknowledged_write_counts_as_concurrent() -> None:
    acked = [w("k", 1, 1.0, 1.1)]
    m = lost_writes(acked, everywhere({"k": "run:99"}), attempted_values={"run:1", "run:99"})
    assert m.lost == 0


def test_a_value_the_run_never_wrote_is_older_than_every_acknowledged_write() -> None:
    acked = [w("k", 1, 1.0, 1.1)]
    m = lost_writes(acked, everywhere({"k": "before-the-run"}), attempted_values={"run:1"})
    assert m.lost == 1 and m.details["lossReasons"]["foreign"] == 3
    # without the list of attempted values, an unknown value is given the benefit of doubt
    assert lost_writes(acked, everywhere({"k": "before-the-run"})).lost == 0


def test_regions_that_disagree_are_divergent_keys() -> None:
    acked = [w("k1", 1, 1.0, 1.1), w("k1", 2, 1.05, 1.2), w("k2", 3, 3.0, 3.1)]
    final = everywhere({"k1": "run:1", "k2": "run:3"})
    final["ap"]["k1"] = "run:2"
    m = lost_writes(acked, final)
    assert m.lost == 0  # concurrent writes: either value is acceptable
    assert m.divergent_keys == 1
    assert m.details["divergentExamples"] == [
        {"key": "k1", "values": {"ap": "run:2", "eu": "run:1", "us": "run:1"}}
    ]


def test_a_key_not_read_back_in_a_region_makes_the_count_a_lower_bound() -> None:
    acked = [w("k1", 1, 1.0, 1.1), w("k2", 2, 2.0, 2.1)]
    final = everywhere({"k1": "run:1", "k2": "run:2"})
    del final["eu"]["k2"]
    m = lost_writes(acked, final)
    assert m.unverified == 1 and m.no_data
    assert m.measured == 0
    assert "could not be read back" in m.details["reason"]


def test_nothing_to_verify_is_no_data() -> None:
    assert lost_writes([], everywhere({})).no_data
    assert lost_writes([w("k", 1, 1.0, 1.1)], {}).no_data


def test_examples_are_the_first_ten_lost_writes_by_send_time() -> None:
    acked = [w(f"k{i}", i, float(i), i + 0.1) for i in range(30)]
    m = lost_writes(acked, everywhere({}) | {"us": {f"k{i}": None for i in range(30)}})
    assert m.lost == 30
    assert [e["key"] for e in m.examples] == [f"k{i}" for i in range(10)]


def test_one_hundred_thousand_writes_are_checked_quickly() -> None:
    acked = [w(f"k{i % 500}", i, i * 0.001, i * 0.001 + 0.0005) for i in range(100_000)]
    last = {a.key: a.value for a in acked}
    final = everywhere(last)  # type: ignore[arg-type]
    started = time.perf_counter()
    m = lost_writes(acked, final)
    elapsed = time.perf_counter() - started
    assert m.lost == 0
    assert elapsed < 10.0, f"took {elapsed:.1f}s"


# ---------------------------------------------------------------- properties

writes = st.lists(
    st.tuples(
        st.integers(0, 5),  # key
        st.floats(0, 100, allow_nan=False),  # sent
        st.floats(0.001, 5, allow_nan=False),  # latency
    ),
    min_size=1,
    max_size=60,
)


def build(raw: list[tuple[int, float, float]]) -> list[AckedWrite]:
    return [w(f"k{k}", i, sent, sent + lat) for i, (k, sent, lat) in enumerate(raw)]


@settings(max_examples=150, deadline=None)
@given(raw=writes)
def test_lost_writes_is_zero_when_every_region_has_the_last_acknowledged_value(
    raw: list[tuple[int, float, float]],
) -> None:
    acked = build(raw)
    last: dict[str, AckedWrite] = {}
    for a in acked:
        if a.key not in last or a.acked_at > last[a.key].acked_at:
            last[a.key] = a
    m = lost_writes(acked, everywhere({k: a.value for k, a in last.items()}))
    assert m.lost == 0 and not m.no_data


def reference_lost(acked: list[AckedWrite], final: dict[str, dict[str, str | None]]) -> int:
    by_value = {a.value: a for a in acked}
    lost = 0
    for a in acked:
        for values in final.values():
            v = values[a.key]
            if v is None or (v != a.value and by_value[v].acked_at < a.sent_at):
                lost += 1
                break
    return lost


@settings(max_examples=150, deadline=None)
@given(raw=writes, data=st.data())
def test_lost_writes_matches_the_happen_before_definition(
    raw: list[tuple[int, float, float]], data: st.DataObject
) -> None:
    acked = build(raw)
    keys = sorted({a.key for a in acked})
    final: dict[str, dict[str, str | None]] = {}
    for region in REGIONS:
        final[region] = {}
        for key in keys:
            choices: list[str | None] = [None, *(a.value for a in acked if a.key == key)]
            final[region][key] = data.draw(st.sampled_from(choices))
    m = lost_writes(acked, final)
    assert m.lost == reference_lost(acked, final)
    assert m.lost <= len(acked)
    assert sum(m.lost_by_region.values()) >= m.lost
