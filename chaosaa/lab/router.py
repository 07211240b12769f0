"""Global router (the lab's GSLB): routes each client to its home region, fails over.

Clients name their home region in ``X-Chaosaa-Home``; without it they are spread
round-robin over healthy regions. Every region is health-checked through its
router→region link proxy, so a fault on that link is seen exactly as clients see it.

State machine per region (hysteresis; DOMAIN.md "no flapping"):
- UP -> DOWN after ``fail_after`` consecutive failed checks;
- DOWN -> UP only after ``recover_after`` consecutive successes **and** ``hold_down``
  seconds without any failed check; a region that goes down again within
  ``flap_window`` of coming back has its hold-down doubled (up to ``max_hold_down``),
  so a flapping region stays out instead of bouncing traffic.

Every transition is appended to a JSONL event log (the ground truth for failover-time
measurements) with a UTC wall-clock time and the CLOCK_MONOTONIC reading, which every
process on the machine shares.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chaosaa.lab import _runtime

log = logging.getLogger(__name__)

HOME_HEADER = "X-Chaosaa-Home"
REGION_HEADER = "X-Chaosaa-Region"
FAILOVER_HEADER = "X-Chaosaa-Failover"
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",
}


@dataclass(frozen=True)
class HealthPolicy:
    interval: float = 0.25
    timeout: float = 0.5
    fail_after: int = 3
    recover_after: int = 4
    hold_down: float = 3.0
    max_hold_down: float = 30.0
    flap_window: float = 30.0
    upstream_timeout: float = 1.0


@dataclass
class RegionHealth:
    name: str
    url: str
    up: bool = True
    misses: int = 0
    successes: int = 0
    first_miss: tuple[float, float] | None = None  # (unix, mono) of the current miss streak
    last_miss_mono: float = 0.0
    up_since_mono: float = field(default_factory=time.monotonic)
    hold_down: float = 0.0
    last_error: str | None = None
    checks: int = 0


def now_stamp() -> dict[str, Any]:
    unix = time.time()
    return {
        "ts": datetime.fromtimestamp(unix, UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
        "unix": unix,
        "mono": time.monotonic(),
    }


class EventLog:
    """Append-only JSONL log written from its own thread (file I/O off the event loop)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventlog")

    def emit(self, event: str, **detail: Any) -> dict[str, Any]:
        record = {**now_stamp(), "event": event, **detail}
        self.events.append(record)
        log.info("event %s %s", event, detail)
        if self.path is not None:
            self._executor.submit(self._append, json.dumps(record) + "\n")
        return record

    def _append(self, line: str) -> None:
        assert self.path is not None
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class Router:
    def __init__(
        self,
        regions: dict[str, str],
        policy: HealthPolicy | None = None,
        event_log: Path | None = None,
    ) -> None:
        self.policy = policy or HealthPolicy()
        self.order = list(regions)
        self.regions = {name: RegionHealth(name, url) for name, url in regions.items()}
        self.events = EventLog(event_log)
        self.serving: dict[str, str | None] = {name: name for name in self.order}
        self._rr = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._health_session: aiohttp.ClientSession | None = None
        self._session: aiohttp.ClientSession | None = None
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "chaosaa_router_requests_total",
            "Requests through the global router",
            ["home", "served_by", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "chaosaa_router_request_duration_seconds",
            "Router request latency",
            ["served_by"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.healthy = Gauge(
            "chaosaa_router_region_healthy",
            "1 while the router routes to the region",
            ["region"],
            registry=self.registry,
        )
        self.serving_gauge = Gauge(
            "chaosaa_router_serving",
            "1 for the region currently serving each home region",
            ["home", "served_by"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "chaosaa_router_failovers_total",
            "Changes of the serving region of a home region (kind=failover|failback)",
            ["home", "from_region", "to_region", "kind"],
            registry=self.registry,
        )
        self.checks = Counter(
            "chaosaa_router_health_checks_total",
            "Health checks by result",
            ["region", "result"],
            registry=self.registry,
        )
        for name in self.order:
            self.healthy.labels(name).set(1)
            self.serving_gauge.labels(name, name).set(1)

    async def start(self) -> None:
        self._health_session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.policy.timeout)
        )
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.policy.upstream_timeout),
            auto_decompress=False,
            connector=aiohttp.TCPConnector(limit=200),
        )
        self.events.emit("router_start", regions=self.order, policy=self.policy.__dict__)
        for region in self.regions.values():
            self._tasks.append(asyncio.create_task(self._check_loop(region)))

    async def close(self) -> None:
        await _runtime.cancel_and_wait(self._tasks)
        for s in (self._health_session, self._session):
            if s is not None:
                await s.close()
        self.events.close()

    # -- health ----------------------------------------------------------------------
    async def _check_loop(self, region: RegionHealth) -> None:
        # Checks never overlap: a hanging region costs one timeout per check.
        while True:
            started = time.monotonic()
            ok, error = await self._check(region)
            self.observe(region.name, ok, error)
            await asyncio.sleep(max(0.0, self.policy.interval - (time.monotonic() - started)))

    async def _check(self, region: RegionHealth) -> tuple[bool, str | None]:
        assert self._health_session is not None
        try:
            async with self._health_session.get(f"{region.url}/healthz") as resp:
                await resp.read()
                if resp.status == 200:
                    return True, None
                return False, f"HTTP {resp.status}"
        except TimeoutError:
            return False, f"timeout after {self.policy.timeout}s"
        except (aiohttp.ClientError, OSError) as exc:
            return False, f"{type(exc).__name__}: {exc}"

    def observe(self, name: str, ok: bool, error: str | None = None) -> None:
        """Feed one health-check result into the state machine (public for tests)."""
        r = self.regions[name]
        p = self.policy
        now = time.monotonic()
        r.checks += 1
        self.checks.labels(name, "ok" if ok else "fail").inc()
        if not ok:
            r.successes = 0
            r.misses += 1
            r.last_miss_mono = now
            r.last_error = error
            if r.misses == 1:
                r.first_miss = (time.time(), now)
            if r.up and r.misses >= p.fail_after:
                r.up = False
                flapped = now - r.up_since_mono < p.flap_window and r.hold_down > 0
                r.hold_down = min(r.hold_down * 2, p.max_hold_down) if flapped else p.hold_down
                first = r.first_miss or (time.time(), now)
                self.events.emit(
                    "region_down",
                    region=name,
                    misses=r.misses,
                    firstMissUnix=first[0],
                    firstMissMono=first[1],
                    holdDownSeconds=r.hold_down,
                    error=error,
                )
                self.healthy.labels(name).set(0)
                self._reroute()
            return
        r.misses = 0
        r.first_miss = None
        r.successes += 1
        if not r.up and r.successes >= p.recover_after and now - r.last_miss_mono >= r.hold_down:
            r.up = True
            r.up_since_mono = now
            self.events.emit(
                "region_up", region=name, successes=r.successes, holdDownSeconds=r.hold_down
            )
            self.healthy.labels(name).set(1)
            self._reroute()

    def _target_for(self, home: str) -> str | None:
        """The home region if up, else the next up region in the configured order."""
        i = self.order.index(home)
        for name in self.order[i:] + self.order[:i]:
            if self.regions[name].up:
                return name
        return None

    def _reroute(self) -> None:
        for home in self.order:
            old, new = self.serving[home], self._target_for(home)
            if old == new:
                continue
            self.serving[home] = new
            if old is not None:
                self.serving_gauge.labels(home, old).set(0)
            if new is not None:
                self.serving_gauge.labels(home, new).set(1)
            kind = "failback" if new == home else ("no_region" if new is None else "failover")
            self.events.emit(kind, home=home, **{"from": old, "to": new})
            self.transitions.labels(home, old or "none", new or "none", kind).inc()

    # -- routing ---------------------------------------------------------------------
    def pick(self, home: str | None) -> str | None:
        if home is not None:
            return self.serving[home]
        healthy = [n for n in self.order if self.regions[n].up]
        if not healthy:
            return None
        return healthy[next(self._rr) % len(healthy)]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        r = app.router
        r.add_get("/healthz", self._h_health)
        r.add_get("/metrics", _runtime.metrics_handler(self.registry))
        r.add_get("/router/state", self._h_state)
        r.add_get("/router/events", self._h_events)
        r.add_route("*", "/{tail:.*}", self._h_proxy)
        return app

    async def _h_health(self, _r: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _h_state(self, _r: web.Request) -> web.Response:
        now = time.monotonic()
        return web.json_response(
            {
                "regions": {
                    r.name: {
                        "up": r.up,
                        "url": r.url,
                        "misses": r.misses,
                        "successes": r.successes,
                        "holdDownSeconds": r.hold_down,
                        "secondsSinceLastMiss": (now - r.last_miss_mono)
                        if r.last_miss_mono
                        else None,
                        "lastError": r.last_error,
                        "checks": r.checks,
                    }
                    for r in self.regions.values()
                },
                "serving": self.serving,
                "policy": self.policy.__dict__,
            }
        )

    async def _h_events(self, request: web.Request) -> web.Response:
        try:
            since = float(request.query.get("sinceMono", "0"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="sinceMono must be a number") from exc
        return web.json_response({"events": [e for e in self.events.events if e["mono"] >= since]})

    async def _h_proxy(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        home = request.headers.get(HOME_HEADER)
        if home is not None and home not in self.regions:
            return web.json_response(
                {"error": f"unknown home region {home!r}; known: {', '.join(self.order)}"},
                status=400,
            )
        target = self.pick(home)
        headers: dict[str, str] = {HOME_HEADER: home or ""}
        if target is None:
            return self._finish(
                home,
                "none",
                started,
                web.json_response({"error": "no healthy region"}, status=503, headers=headers),
            )
        headers[REGION_HEADER] = target
        headers[FAILOVER_HEADER] = "true" if home is not None and target != home else "false"
        upstream = self.regions[target].url + request.rel_url.raw_path_qs
        fwd = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP
        )
        body = await request.read()
        assert self._session is not None
        try:
            async with self._session.request(
                request.method, upstream, headers=fwd, data=body, allow_redirects=False
            ) as up:
                payload = await up.read()
                out = CIMultiDict(
                    (k, v) for k, v in up.headers.items() if k.lower() not in _HOP_BY_HOP
                )
                out.update(headers)
                resp = web.Response(status=up.status, body=payload, headers=out)
        except TimeoutError:
            resp = web.json_response(
                {"error": f"region {target} did not answer within {self.policy.upstream_timeout}s"},
                status=504,
                headers=headers,
            )
        except (aiohttp.ClientError, OSError) as exc:
            resp = web.json_response(
                {"error": f"region {target}: {type(exc).__name__}: {exc}"},
                status=502,
                headers=headers,
            )
        return self._finish(home, target, started, resp)

    def _finish(
        self, home: str | None, served_by: str, started: float, resp: web.Response
    ) -> web.Response:
        resp.headers.setdefault(REGION_HEADER, served_by)
        self.requests.labels(home or "any", served_by, str(resp.status)).inc()
        self.latency.labels(served_by).observe(time.monotonic() - started)
        return resp


async def _amain(config: dict[str, Any]) -> None:
    policy = HealthPolicy(**config.get("policy", {}))
    router = Router(dict(config["regions"]), policy, Path(config["eventLog"]))
    await router.start()
    async with _runtime.serving(router.app(), int(config["fd"])):
        log.info("router up")
        await _runtime.wait_for_shutdown_signal()
    await router.close()


def main() -> None:
    config = _runtime.child_config("chaosaa lab global router")
    _runtime.setup_logging("router")
    asyncio.run(_amain(config))


if __name__ == "__main__":
    main()
