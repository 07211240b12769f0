"""Reading the system back after a run: every acknowledged key from every region's own
endpoint (for ``lostWrites``), waiting for regions to converge, and canary lag.

Reads go to each region directly (``GET {region_url}/kv/{key}``), never through the global
entry point, because the question is what *each region* holds. With ``metadata_path``
(e.g. the lab's ``/internal/kv/{key}``) the JSON document there is read instead of the
value body; a 404, or a document with ``exists: false`` / ``deleted: true``, means absent.

A key that cannot be read (timeouts, 5xx after retries) is not "absent": that would count
as a lost write. ``read_back`` raises ``ReadbackError`` carrying what it did read.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

import aiohttp

from chaosaa.errors import TargetUnreachableError

Values = dict[str, dict[str, str | None]]  # region -> key -> value (None = absent)

DEFAULT_CONCURRENCY = 32
DEFAULT_REQUEST_TIMEOUT = 2.0
DEFAULT_ATTEMPTS = 3
_RETRY_BACKOFF = 0.05


class ReadbackError(TargetUnreachableError):
    """Some keys could not be read from some regions; ``values`` holds everything that was."""

    def __init__(self, values: Values, unreadable: dict[str, list[str]]) -> None:
        self.values = values
        self.unreadable = unreadable
        detail = ", ".join(
            f"{region}: {len(keys)} key(s), e.g. {keys[0]}" for region, keys in unreadable.items()
        )
        super().__init__(f"read-back failed for {detail}")


class CanaryError(TargetUnreachableError):
    """The canary marker could not be written in the source region."""


class _Unreadable(Exception):
    """One key could not be read from one region (after retries)."""


@dataclass
class Convergence:
    """Result of ``wait_converged``: ``divergent`` is empty when every region agreed."""

    divergent: list[str]
    values: Values
    elapsed: float
    unreadable: dict[str, list[str]] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return not self.divergent


def _session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max(1, concurrency), limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": "chaosaa-readback"},
    )


def _key_url(base: str, key: str, metadata_path: str | None) -> str:
    path = (metadata_path or "/kv/{key}").replace("{key}", quote(key, safe=""))
    return base.rstrip("/") + path


def _parse(status: int, body: bytes, metadata: bool) -> str | None:
    if status == 404:
        return None
    if not 200 <= status < 300:
        raise _Unreadable(f"HTTP {status}")
    if not metadata:
        return body.decode("utf-8", "replace")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise _Unreadable(f"metadata is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _Unreadable("metadata is not a JSON object")
    if doc.get("deleted") or doc.get("exists") is False or doc.get("value") is None:
        return None
    return str(doc["value"])


async def _read_one(
    session: aiohttp.ClientSession,
    url: str,
    *,
    metadata: bool,
    request_timeout: float,
    attempts: int,
) -> str | None:
    reason = "not attempted"
    for attempt in range(max(1, attempts)):
        if attempt:
            await asyncio.sleep(_RETRY_BACKOFF * 2 ** (attempt - 1))
        try:
            async with asyncio.timeout(request_timeout), session.get(url) as resp:
                return _parse(resp.status, await resp.read(), metadata)
        except _Unreadable as exc:
            reason = str(exc)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            reason = type(exc).__name__
    raise _Unreadable(reason)


async def _read_many(
    session: aiohttp.ClientSession,
    region_urls: Mapping[str, str],
    keys: list[str],
    *,
    concurrency: int,
    request_timeout: float,
    attempts: int,
    metadata_path: str | None,
) -> tuple[Values, dict[str, list[str]]]:
    """Read ``keys`` from every region with a fixed pool of workers (no task per key)."""
    values: Values = {region: {} for region in region_urls}
    unreadable: dict[str, list[str]] = {}
    work: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for region in region_urls:
        for key in keys:
            work.put_nowait((region, key))

    async def worker() -> None:
        while True:
            try:
                region, key = work.get_nowait()
            except asyncio.QueueEmpty:
                return
            url = _key_url(region_urls[region], key, metadata_path)
            try:
                values[region][key] = await _read_one(
                    session,
                    url,
                    metadata=metadata_path is not None,
                    request_timeout=request_timeout,
                    attempts=attempts,
                )
            except _Unreadable:
                unreadable.setdefault(region, []).append(key)

    workers = min(max(1, concurrency), work.qsize()) or 1
    await asyncio.gather(*(worker() for _ in range(workers)))
    return values, unreadable


def _distinct(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(keys))


async def read_back(
    region_urls: Mapping[str, str],
    keys: Iterable[str],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    attempts: int = DEFAULT_ATTEMPTS,
    metadata_path: str | None = None,
) -> Values:
    """Read every key from every region: ``{region: {key: value or None}}``.

    Raises ``ReadbackError`` (with the partial result) if any key stays unreadable after
    ``attempts`` tries of ``request_timeout`` seconds each.
    """
    async with _session(concurrency) as session:
        values, unreadable = await _read_many(
            session,
            region_urls,
            _distinct(keys),
            concurrency=concurrency,
            request_timeout=request_timeout,
            attempts=attempts,
            metadata_path=metadata_path,
        )
    if unreadable:
        raise ReadbackError(values, unreadable)
    return values


def divergent_keys(values: Values, keys: Iterable[str]) -> list[str]:
    """Keys on which the regions disagree (a region missing from ``values[region]``
    counts as disagreeing: unknown is not agreement)."""
    out = []
    for key in keys:
        seen = {values[r].get(key, _MISSING) for r in values}
        if len(seen) > 1 or _MISSING in seen:
            out.append(key)
    return out


_MISSING = object()


async def wait_converged(
    region_urls: Mapping[str, str],
    keys: Iterable[str],
    timeout: float,  # noqa: ASYNC109 - a measurement window: divergence is a result
    *,
    interval: float = 0.5,
    concurrency: int = DEFAULT_CONCURRENCY,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    metadata_path: str | None = None,
) -> Convergence:
    """Poll until every region holds the same value for every key, or ``timeout``.

    The first pass reads every key; later passes re-read only the keys still divergent.
    Returns the divergent keys (empty = converged), the last value read for every key in
    every region, and the seconds it took. A pass never starts after the deadline, so the
    call returns within ``timeout`` plus one pass.
    """
    wanted = _distinct(keys)
    start = time.monotonic()
    deadline = start + max(0.0, timeout)
    values: Values = {region: {} for region in region_urls}
    unreadable: dict[str, list[str]] = {}
    pending = wanted
    async with _session(concurrency) as session:
        while True:
            fresh, unreadable = await _read_many(
                session,
                region_urls,
                pending,
                concurrency=concurrency,
                request_timeout=request_timeout,
                attempts=1,
                metadata_path=metadata_path,
            )
            for region, keyed in fresh.items():
                values[region].update(keyed)
                for key in unreadable.get(region, []):
                    values[region].pop(key, None)
            pending = divergent_keys(values, pending)
            now = time.monotonic()
            if not pending or now + interval > deadline:
                break
            await asyncio.sleep(interval)
    return Convergence(
        divergent=pending,
        values=values,
        elapsed=time.monotonic() - start,
        unreadable=unreadable,
    )


async def canary_lag(
    region_urls: Mapping[str, str],
    source: str,
    targets: Iterable[str],
    timeout: float,  # noqa: ASYNC109 - a measurement window: not visible is a result
    *,
    interval: float = 0.02,
    request_timeout: float = 1.0,
    cleanup: bool = True,
) -> dict[str, float | None]:
    """Write a marker key in ``source``, poll each target until it shows the marker.

    Returns seconds from the source's acknowledgement to the first poll answer that showed
    the marker, per target (None: not visible within ``timeout``). Each number
    over-states the lag by at most ``interval`` plus one poll's round trip.
    Raises ``CanaryError`` if the source does not acknowledge the marker.
    """
    targets = [t for t in targets if t != source]
    interval = max(interval, 0.001)
    key = f"chaosaa-canary-{uuid.uuid4().hex[:16]}"
    token = f"{key}@{time.time_ns()}"
    async with _session(len(targets) + 2) as session:
        put_url = _key_url(region_urls[source], key, None)
        try:
            async with (
                asyncio.timeout(request_timeout),
                session.put(put_url, data=token.encode()) as resp,
            ):
                await resp.read()
                if not 200 <= resp.status < 300:
                    raise CanaryError(f"canary write in {source}: HTTP {resp.status}")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise CanaryError(f"canary write in {source}: {type(exc).__name__}") from exc
        acked = time.monotonic()
        deadline = acked + timeout

        async def poll(target: str) -> float | None:
            url = _key_url(region_urls[target], key, None)
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return None
                try:
                    async with (
                        asyncio.timeout(min(request_timeout, deadline - now)),
                        session.get(url) as resp,
                    ):
                        body = await resp.read()
                        if resp.status == 200 and body.decode("utf-8", "replace") == token:
                            return time.monotonic() - acked
                except (TimeoutError, aiohttp.ClientError, OSError):
                    pass
                await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))

        lags = await asyncio.gather(*(poll(t) for t in targets))
        if cleanup:
            await _delete_quietly(session, put_url, request_timeout)
    return dict(zip(targets, lags, strict=True))


async def _delete_quietly(session: aiohttp.ClientSession, url: str, request_timeout: float) -> None:
    # Best effort: a system without DELETE keeps one small marker key.
    try:
        async with asyncio.timeout(request_timeout), session.delete(url) as resp:
            await resp.read()
    except (TimeoutError, aiohttp.ClientError, OSError):
        pass
