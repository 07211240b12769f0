"""Fault verification: the probes observe what the link proxy really does to a link, and
fail when its data path does not apply a condition it reports as installed."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from chaosaa.lab import proxy as proxy_module
from chaosaa.lab.proxy import CLEAR, LinkProxy, StreamState
from chaosaa.lab.verify import HOLD_WINDOW, probe, probe_checks, readback_checks

pytestmark = [pytest.mark.lab, pytest.mark.timeout(60)]

LINK = "a>b"


class Rig:
    def __init__(self, proxy: LinkProxy, port: int) -> None:
        self.proxy = proxy
        self.addresses = {LINK: ("127.0.0.1", port)}

    def add(self, **cond: Any) -> dict[str, Any]:
        body = {"targets": [{"link": LINK}], "ttl": 10, **cond}
        return self.proxy.condition_json(self.proxy.add_condition(body))

    async def checks(self, *conds: dict[str, Any], active: bool = True) -> list[dict[str, Any]]:
        return await probe_checks(conds, self.addresses, active=active, skip=set(), dropped=set())


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """A link proxy in front of a small HTTP server answering ``/healthz``, as a node does."""

    async def healthz(_r: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.setblocking(False)
    proxy = LinkProxy()
    await proxy.start()
    link = await proxy.add_link(LINK, listener, ("127.0.0.1", upstream))
    try:
        yield Rig(proxy, link.listen_port)
    finally:
        await proxy.close()
        await runner.cleanup()


def _plan(cond: dict[str, Any]) -> dict[str, Any]:
    """The planned condition (as the supervisor keeps it) for a proxy condition."""
    return {k: v for k, v in cond.items() if k in ("type", "mode", "delay", "jitter")} | {
        "targets": [{"link": LINK, "dir": "both"}]
    }


async def test_probes_see_open_held_reset_and_delayed_links(rig: Rig) -> None:
    host, port = rig.addresses[LINK]
    open_ = await probe(host, port, 0.5)
    assert open_.outcome == "answered" and open_.status == 200
    rig.add(id="hang", type="blackhole", mode="hang")
    assert (await probe(host, port, HOLD_WINDOW)).outcome == "held"
    rig.add(id="drop", type="blackhole", mode="drop")
    assert (await probe(host, port, 0.5)).outcome == "reset"
    rig.proxy.remove_all()
    rig.add(id="slow", type="latency", delay=0.1)
    assert (await probe(host, port, HOLD_WINDOW)).outcome == "held"
    delayed = await probe(host, port, 0.5)
    assert delayed.outcome == "answered" and delayed.seconds is not None
    assert delayed.seconds >= 0.1
    rig.proxy.remove_all()
    assert (await probe(host, port, HOLD_WINDOW)).outcome == "answered"


async def test_checks_pass_for_applied_conditions_and_after_their_removal(rig: Rig) -> None:
    hang = rig.add(id="c.0", type="blackhole", mode="hang")
    slow = rig.add(id="c.1", type="latency", delay=0.1, jitter=0.01)
    planned = [_plan(hang), _plan(slow)]
    checks = await rig.checks(*planned)
    assert checks and all(c["ok"] for c in checks), checks
    live = {c: rig.proxy.condition_json(rig.proxy.conditions[c]) for c in ("c.0", "c.1")}
    readback = readback_checks(
        zip(["c.0", "c.1"], planned, strict=True), live, None, active=True, shared=set()
    )
    assert all(c["ok"] for c in readback), readback

    rig.proxy.remove_all()
    states = {LINK: {d: CLEAR.to_json() for d in ("up", "down")}}
    readback = readback_checks(
        zip(["c.0", "c.1"], planned, strict=True), {}, states, active=False, shared=set()
    )
    assert all(c["ok"] for c in readback), readback
    checks = await rig.checks(*planned, active=False)
    assert checks and all(c["ok"] for c in checks), checks


async def test_checks_fail_when_the_data_path_ignores_an_installed_condition(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probes are evidence of their own: if the proxy kept reporting a condition its
    streams do not apply, verification must still fail."""
    hang = rig.add(id="h", type="blackhole", mode="hang")
    assert hang["inEffect"]

    def ignore_conditions(_link: object, _direction: str) -> StreamState:
        return CLEAR

    monkeypatch.setattr(proxy_module.Link, "state", ignore_conditions)
    checks = await rig.checks(_plan(hang))
    assert checks and not any(c["ok"] for c in checks), checks
    assert {c["probe"]["outcome"] for c in checks} == {"answered"}

    rig.proxy.remove_all()
    slow = rig.add(id="l", type="latency", delay=0.2)
    checks = await rig.checks(_plan(slow))
    assert checks and not any(c["ok"] for c in checks), checks


async def test_readback_fails_for_a_condition_the_proxy_does_not_hold(rig: Rig) -> None:
    planned = _plan({"type": "blackhole", "mode": "drop"})
    readback = readback_checks([("gone", planned)], {}, None, active=True, shared=set())
    assert [c["ok"] for c in readback] == [False]
    rig.add(id="other", type="blackhole", mode="drop")
    states = {LINK: {d: rig.proxy.links[LINK].state(d).to_json() for d in ("up", "down")}}
    readback = readback_checks([("gone", planned)], {}, states, active=False, shared=set())
    assert readback[0]["ok"] is False and readback[0]["stillShowing"] == [
        f"{LINK} down",
        f"{LINK} up",
    ]
    # ... unless another fault's condition of the same type explains it.
    readback = readback_checks(
        [("gone", planned)], {}, states, active=False, shared={(LINK, "blackhole")}
    )
    assert readback[0]["ok"] is True
