"""Each database system comes up with real replication and its real exporters, serves the
demo node's KV API, and goes down leaving nothing behind."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from chaosaa.lab import _runtime
from chaosaa.lab.node import REGION_HEADER, Node
from chaosaa.lab.storage import KVStorage, open_storage
from chaosaa.lab.systems import SYSTEMS, DatabaseSystem, Galera
from chaosaa.lab.systems.netns import leftover_namespaces
from tests.db.helpers import eventually, exporter_value, leftovers, require, shm_segments

pytestmark = [pytest.mark.db, pytest.mark.timeout(300)]

REGIONS = ["us", "eu", "ap"]
UP_METRIC = {"postgres": "pg_up", "mysql": "mysql_up"}


def _storage(system: DatabaseSystem, region: str) -> KVStorage:
    return open_storage(region, {"storage": system.databases()[region].to_config()})


@pytest.mark.parametrize("name", list(SYSTEMS))
async def test_system_replicates_between_regions_and_leaves_nothing_behind(
    name: str, tmp_path: Path
) -> None:
    cls = SYSTEMS[name]
    require(cls)
    shm_before = shm_segments()
    system = cls(REGIONS, tmp_path / "logs")
    started = time.monotonic()
    async with system.running(time_limit=180):
        print(f"{name}: 3 regions up in {time.monotonic() - started:.1f}s")
        root = system.root.path  # type: ignore[attr-defined]
        writer, reader = _storage(system, "eu"), _storage(system, "ap")
        await writer.start()
        await reader.start()
        try:
            key = f"t-{uuid.uuid4().hex[:8]}"
            rec = await writer.write(key, b"from-eu")

            async def arrived() -> bool:
                got = await reader.read(key)
                return got is not None and got.value == b"from-eu" and got.version == rec.version

            await eventually(arrived, 10, f"{key} written in eu to be read in ap")
        finally:
            await writer.close()
            await reader.close()
        for region in REGIONS:
            assert await exporter_value(system, region, UP_METRIC[system.kind]) == 1
        pids = [pid for r in REGIONS for pid in system.pids(r)]
        assert len(pids) >= 2 * len(REGIONS)  # a server and an exporter per region
    assert leftovers(root) == []
    assert shm_segments() <= shm_before, "shared memory left behind"
    if cls is Galera:
        assert await leftover_namespaces() == []


async def _serve(node: Node) -> tuple[web.AppRunner, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    runner = await _runtime.serve_app(node.app(), sock)
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("name", list(SYSTEMS))
async def test_demo_node_kv_api_on_the_real_database(name: str, tmp_path: Path) -> None:
    cls = SYSTEMS[name]
    require(cls)
    system = cls(REGIONS, tmp_path / "logs", exporters=False)
    async with system.running(time_limit=180):
        nodes, runners, urls = {}, [], {}
        for region in REGIONS:
            node = Node(region, tmp_path / "unused.sqlite", {}, _storage(system, region))
            await node.start()
            nodes[region] = node
            runner, urls[region] = await _serve(node)
            runners.append(runner)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                key = f"k-{uuid.uuid4().hex[:8]}"
                async with http.put(f"{urls['eu']}/kv/{key}", data=b"hello") as resp:
                    assert resp.status == 200, await resp.text()
                    assert resp.headers[REGION_HEADER] == "eu"
                    ack = await resp.json()
                assert ack["origin"] == "eu"

                async def visible_everywhere() -> bool:
                    for region in REGIONS:
                        async with http.get(f"{urls[region]}/kv/{key}") as r:
                            if r.status != 200 or await r.read() != b"hello":
                                return False
                    return True

                await eventually(visible_everywhere, 10, "the write in every region")
                async with http.get(f"{urls['ap']}/internal/kv/{key}") as resp:
                    meta = await resp.json()
                assert meta["origin"] == "eu" and meta["hlc"] == ack["hlc"]
                async with http.get(f"{urls['us']}/internal/kv?prefix={key}") as resp:
                    assert [i["key"] for i in (await resp.json())["items"]] == [key]
                async with http.delete(f"{urls['us']}/kv/{key}") as resp:
                    assert resp.status == 200

                async def gone() -> bool:
                    async with http.get(f"{urls['ap']}/kv/{key}") as r:
                        return r.status == 404

                await eventually(gone, 10, "the delete in ap")
                async with http.get(f"{urls['eu']}/healthz") as resp:
                    assert resp.status == 200
        finally:
            for runner in runners:
                await runner.cleanup()
            await asyncio.gather(*(n.close() for n in nodes.values()))
