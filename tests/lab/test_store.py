"""Demo-node storage: hybrid logical clocks and last-writer-wins, without processes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chaosaa.lab.hlc import HybridLogicalClock, Version
from chaosaa.lab.store import Record, Store

pytestmark = pytest.mark.lab


def test_hlc_is_monotonic_even_when_the_wall_clock_goes_back() -> None:
    wall = [1000]
    clock = HybridLogicalClock(lambda: wall[0])
    a = clock.now()
    wall[0] = 900  # NTP step backwards
    b = clock.now()
    assert b > a
    clock.observe(5000, 7)  # a peer ahead of us
    c = clock.now()
    assert c > (5000, 7)


def test_version_order_breaks_ties_by_region() -> None:
    assert Version(10, 0, "us") > Version(10, 0, "eu")
    assert Version(10, 1, "ap") > Version(10, 0, "us")
    assert Version(11, 0, "ap") > Version(10, 9, "us")


def _remote(key: str, value: bytes | None, wall: int, origin: str) -> Record:
    return Record(key, value, value is None, Version(wall, 0, origin), wall / 1000)


def test_write_is_committed_before_it_returns(tmp_path: Path) -> None:
    store = Store(tmp_path / "us.sqlite", "us")
    store.write("k", b"v")
    # A separate connection (another process would see the same) reads the committed row.
    other = sqlite3.connect(tmp_path / "us.sqlite")
    assert other.execute("SELECT value FROM kv WHERE key='k'").fetchone() == (b"v",)
    other.close()
    store.close()


def test_last_writer_wins_and_replay_is_idempotent(tmp_path: Path) -> None:
    store = Store(tmp_path / "eu.sqlite", "eu")
    newer = _remote("k", b"new", 2000, "us")
    older = _remote("k", b"old", 1000, "ap")
    assert store.apply_remote([newer]).applied == 1
    result = store.apply_remote([older])
    assert (result.applied, result.conflicts) == (0, 1)  # concurrent write from ap lost
    assert store.apply_remote([newer, newer]).applied == 0  # replay changes nothing
    rec = store.read("k")
    assert rec is not None and rec.value == b"new" and rec.version.origin == "us"
    # A local write after seeing the remote one orders after it (HLC observed it).
    local = store.write("k", b"local")
    assert local.version > newer.version
    store.close()


def test_equal_timestamps_resolve_by_region_everywhere(tmp_path: Path) -> None:
    a = _remote("k", b"from-us", 3000, "us")
    b = _remote("k", b"from-eu", 3000, "eu")
    s1, s2 = Store(tmp_path / "1.sqlite", "ap"), Store(tmp_path / "2.sqlite", "ap")
    s1.apply_remote([a, b])
    s2.apply_remote([b, a])
    r1, r2 = s1.read("k"), s2.read("k")
    assert r1 is not None and r2 is not None
    assert r1.value == r2.value == b"from-us"
    s1.close()
    s2.close()


def test_delete_is_a_tombstone_that_beats_older_writes(tmp_path: Path) -> None:
    store = Store(tmp_path / "us.sqlite", "us")
    store.apply_remote([_remote("k", None, 2000, "eu")])
    store.apply_remote([_remote("k", b"stale", 1500, "ap")])
    rec = store.read("k")
    assert rec is not None and rec.deleted and rec.value is None
    store.close()


def test_log_feeds_peers_from_a_cursor(tmp_path: Path) -> None:
    store = Store(tmp_path / "us.sqlite", "us")
    for i in range(5):
        store.write(f"k{i}", b"x" * 100)
    batch = store.log_batch(0, 3, 10_000)
    assert [seq for seq, _ in batch.records] == [1, 2, 3] and batch.head_seq == 5
    store.set_cursor("eu", 3)
    assert store.cursor("eu") == 3
    assert [seq for seq, _ in store.log_batch(3, 100, 10_000).records] == [4, 5]
    assert len(store.log_batch(0, 100, 250).records) == 1  # byte budget respected
    store.close()
