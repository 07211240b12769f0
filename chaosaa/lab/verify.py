"""Observing a lab fault: is it in effect, or gone?

A fault's time to effect ends when it is verified effective, so verification has to be
both fast and honest. Two kinds of evidence are gathered concurrently, and both must hold:

- **Read-back from the enforcement point.** The link proxy reports, per target link
  direction, whether the condition is part of the state its streams consult right before
  they forward a byte (every write on the proxy's data path follows such a read with no
  suspension in between), and for ``drop`` whether any open connection escaped the reset.
  After a revert, the condition is gone and the link direction no longer shows its effect.
  For regionDown the node's process state comes from ``/proc``.
- **Observation on the wire.** A request sent through each cut link must be reset at once
  (``drop``) or not be answered within :data:`HOLD_WINDOW` (``hang``); through a delayed
  link it must not be answered before ``min(HOLD_WINDOW, 0.9 * (delay - jitter))``; after
  a revert the links answer again (a delayed link faster than that floor). An unfaulted
  probe through a link is answered in about 1 ms (5 ms at p99 with five probes at once),
  so a proxy that stored a condition without applying it fails these checks.

Bandwidth and loss are verified by read-back only: observing a rate or a probability
takes far longer than the 50 ms budget, and probing a throttled link would spend the
bandwidth of the system under test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from chaosaa.lab import _runtime
from chaosaa.lab.faults import CONDITION_CHECKS

#: a held link must not answer a probe within this window (~10x an unfaulted round trip)
HOLD_WINDOW = 0.02
#: how long an open link may take to answer a probe
ANSWER_TIMEOUT = 0.5
_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: chaosaa-probe\r\nConnection: close\r\n\r\n"
#: what a probe sends, by the protocol of the link's upstream, so that a healthy upstream
#: answers at once: an HTTP request; PostgreSQL's SSLRequest (answered with one byte);
#: nothing to a MySQL server (it greets first)
HELLO = {
    "http": _REQUEST,
    "postgres": (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"),
    "mysql": b"",
}

Outcome = Literal["answered", "reset", "held"]
Check = dict[str, Any]


@dataclass(frozen=True)
class Probe:
    outcome: Outcome
    #: from sending the request to the first byte of the answer, or to the reset
    seconds: float | None = None
    status: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"outcome": self.outcome}
        if self.seconds is not None:
            out["seconds"] = round(self.seconds, 6)
        if self.status is not None:
            out["status"] = self.status
        return out


class _ProbeProtocol(asyncio.Protocol):
    """Records when the answer's first byte (or the reset) arrived: the event loop runs
    I/O callbacks before timers that fell due in the same iteration, so a byte that
    arrived within the window is recorded before the window's timeout is handled."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.first_byte: float | None = None
        self.head = b""
        self.ended_at: float | None = None
        self.settled: asyncio.Future[None] = loop.create_future()

    def data_received(self, data: bytes) -> None:
        if self.first_byte is None:
            self.first_byte = time.monotonic()
        self.head = (self.head + data)[:64]
        self._settle()

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if self.ended_at is None:
            self.ended_at = time.monotonic()
        self._settle()

    def _settle(self) -> None:
        if not self.settled.done():
            self.settled.set_result(None)

    def status(self) -> int | None:
        line = self.head.split(b"\r\n", 1)[0].split()
        if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
            return int(line[1])
        return None


async def probe(host: str, port: int, window: float, hello: bytes = _REQUEST) -> Probe:
    """``hello`` (one ``GET /healthz``) on a new connection: answered, reset, or held for
    ``window``."""
    loop = asyncio.get_running_loop()
    proto = _ProbeProtocol(loop)
    try:
        async with asyncio.timeout(window):
            transport, _ = await loop.create_connection(lambda: proto, host, port)
    except TimeoutError:
        return Probe("held")
    except OSError:
        return Probe("reset")
    sent = time.monotonic()
    try:
        if hello:
            transport.write(hello)
        await asyncio.wait({proto.settled}, timeout=window)
    finally:
        if proto.first_byte is not None:
            transport.close()
        else:
            # Reset, so the proxy does not keep holding a connection nobody waits for.
            _runtime.reset(transport)
    if proto.first_byte is not None:  # any byte back: the link forwards both ways
        return Probe("answered", proto.first_byte - sent, proto.status())
    if proto.ended_at is not None:
        return Probe("reset", proto.ended_at - sent)
    return Probe("held")


def _targets(cond: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    out = []
    for t in cond["targets"]:
        dirs = ["down", "up"] if t.get("dir", "both") == "both" else [t["dir"]]
        out.append((str(t["link"]), dirs))
    return out


def readback_checks(
    conditions: Iterable[tuple[str, Mapping[str, Any]]],
    live: Mapping[str, Mapping[str, Any]],
    link_states: Mapping[str, Mapping[str, Any]] | None,
    *,
    active: bool,
    shared: set[tuple[str, str]],
) -> list[Check]:
    """Checks from the proxy's own account of its conditions.

    ``conditions``: (condition id, planned condition) of the fault; ``live``: the proxy's
    live conditions by id (``GET /conditions``); ``link_states``: per link, the state per
    direction (``GET /links``; needed after a revert); ``shared``: (link, type) pairs that
    other active faults also put a condition of that type on.
    """
    checks: list[Check] = []
    for cid, cond in conditions:
        entry = live.get(cid)
        if active:
            enforced = list(entry.get("enforced", [])) if entry else []
            missing = [e for e in enforced if not e["effective"] or e["uncut"]]
            checks.append(
                {
                    "check": f"condition {cid} ({cond['type']}) in effect on every target",
                    "ok": bool(entry and entry.get("inEffect")),
                    "present": entry is not None,
                    "notInEffect": missing,
                }
            )
            continue
        showing = []
        shows = CONDITION_CHECKS[str(cond["type"])].shows
        for link, dirs in _targets(cond):
            if (link, cond["type"]) in shared or link_states is None:
                continue
            showing += [f"{link} {d}" for d in dirs if shows(link_states.get(link, {}).get(d, {}))]
        checks.append(
            {
                "check": f"condition {cid} ({cond['type']}) removed",
                "ok": entry is None and not showing,
                "present": entry is not None,
                "stillShowing": showing,
            }
        )
    return checks


def latency_floor(cond: Mapping[str, Any]) -> float:
    """A round trip through a delayed link takes at least this long (with slack)."""
    return 0.9 * max(0.0, float(cond.get("delay", 0)) - float(cond.get("jitter", 0)))


def _planned_probes(
    cond: Mapping[str, Any], *, active: bool, skip: set[str], dropped: set[str]
) -> Iterator[tuple[Check, str, float]]:
    """(check, link, window) for each probe one planned condition calls for."""
    links = [link for link, _ in _targets(cond)]
    kind = CONDITION_CHECKS[str(cond["type"])].probe
    if kind == "cut":
        mode = str(cond.get("mode") or "hang")
        for link in links:
            if active:
                expect = "reset" if mode == "drop" or link in dropped else "held"
                window = HOLD_WINDOW if mode == "hang" else ANSWER_TIMEOUT
                yield {"check": f"link {link} cut", "mode": mode, "expect": expect}, link, window
            elif link not in skip:
                yield {"check": f"link {link} open", "expect": "answered"}, link, ANSWER_TIMEOUT
    elif kind == "delay":
        floor = min(HOLD_WINDOW, latency_floor(cond))
        if floor <= 0:
            return
        ms = f"{floor * 1000:.0f} ms"
        for link in links:
            if active:
                yield {"check": f"link {link} round trip > {ms}", "expect": "held"}, link, floor
            elif link not in skip:
                yield {"check": f"link {link} round trip < {ms}", "expect": "answered"}, link, floor


async def probe_checks(
    conditions: Iterable[Mapping[str, Any]],
    addresses: Mapping[str, tuple[str, int]],
    *,
    active: bool,
    skip: set[str],
    dropped: set[str],
    protocols: Mapping[str, str] | None = None,
) -> list[Check]:
    """Probe the links of the conditions whose check calls for a probe, all at once.

    ``skip``: links whose probe would say nothing about this fault after a revert (other
    faults act on them, or their node is stopped); ``dropped``: links another active
    fault resets, where a hang shows as a reset rather than as "held".
    """
    planned = [
        job
        for cond in conditions
        for job in _planned_probes(cond, active=active, skip=skip, dropped=dropped)
    ]
    hello = {link: HELLO[proto] for link, proto in (protocols or {}).items()}
    results = await asyncio.gather(
        *(probe(*addresses[link], window, hello.get(link, _REQUEST)) for _, link, window in planned)
    )
    for (check, _, _), result in zip(planned, results, strict=True):
        check["ok"] = result.outcome == check["expect"]
        check["probe"] = result.to_json()
    return [check for check, _, _ in planned]
