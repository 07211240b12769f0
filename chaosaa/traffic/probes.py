"""Probe protocols: how the generator makes a request and how it judges the answer.

The generator owns timing (the open-loop schedule, deadlines, recording); a probe owns
the protocol: which origin and bytes a request of a given home is, which response header
names the serving region, and whether an answer counts as served. Both probes produce the
same ``Sample``s, so failover time, error rate and latency are measured the same way.

- ``KvProbe`` — the demo KV protocol (the default): ``GET``/``PUT {url}/kv/{key}`` with
  ``X-Chaosaa-Home``, serving region from ``X-Chaosaa-Region``; a write acknowledged with a
  2xx goes into the ledger that ``lostWrites`` reads back.
- ``HttpProbe`` — any HTTP service: one fixed request per home (method, path, headers,
  body), success = an expected status (default any 2xx) and, optionally, a body check;
  serving region from a response header the user names, else the endpoint's region.

Probes are plain, picklable data: worker processes get a copy and call ``bind`` there.
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from chaosaa.errors import InvalidInputError
from chaosaa.traffic.client import Exchange, Origin
from chaosaa.traffic.recording import write_value

if TYPE_CHECKING:  # worker processes unpickle probes without loading the GameDay models
    from chaosaa.spec.traffic import HttpProbe as HttpProbeSpec

HOME_HEADER = "X-Chaosaa-Home"
REGION_HEADER = "X-Chaosaa-Region"
USER_AGENT = "chaosaa-traffic"


class ProbeConfigError(InvalidInputError, ValueError):
    """A probe cannot be built as configured (e.g. a home without a URL)."""


class Request:
    """One request a probe made: where it goes, its bytes, what it is."""

    __slots__ = ("data", "head", "key", "origin", "write")

    def __init__(self, origin: int, data: bytes, *, write: bool, key: int, head: bool) -> None:
        self.origin = origin
        self.data = data
        self.write = write
        self.key = key
        self.head = head


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a probe judged an answer (``error`` None: served)."""

    error: str | None
    served_by: str | None
    acknowledged: bool = False


@dataclass
class Probe(ABC):
    """Request construction and response interpretation for one run."""

    #: home region of each home slot (None: no home)
    homes: list[str | None]
    #: base URL (scheme, host, port, path prefix) each home slot sends to
    urls: list[str]
    #: the region each home slot's URL serves, when it is a region's own endpoint
    endpoint_regions: list[str | None]
    _origins: list[Origin] = field(init=False, repr=False, default_factory=list)
    _origin_of: list[int] = field(init=False, repr=False, default_factory=list)
    _names: dict[bytes, str] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.homes) == len(self.urls) == len(self.endpoint_regions)):
            raise ValueError("homes, urls and endpoint_regions differ in length")
        origins: dict[Origin, int] = {}
        for url in self.urls:
            self._origin_of.append(origins.setdefault(Origin.of(url), len(origins)))
        self._origins = list(origins)

    #: whether the probe writes (and so fills the ledger)
    writes = False

    @property
    def origins(self) -> list[Origin]:
        return self._origins

    @property
    @abstractmethod
    def region_header(self) -> str | None:
        """The response header naming the serving region."""

    @property
    def read_body(self) -> bool:
        return False

    @abstractmethod
    def request(self, home: int, seq: int, rng: random.Random) -> Request:
        """The request of home slot ``home``; ``seq`` is unique in the run."""

    @abstractmethod
    def judge(self, home: int, request: Request, x: Exchange) -> Verdict:
        """Whether the answer in ``x`` (no transport error) served the request."""

    def served_by(self, home: int, header: bytes | None) -> str | None:
        if header is None:
            return self.endpoint_regions[home]
        name = self._names.get(header)
        if name is None:
            name = self._names[header] = header.decode("utf-8", "replace").strip()
        return name or self.endpoint_regions[home]

    def _head(self, home: int, method: str, path: str, extra: Mapping[str, str]) -> str:
        """Request line and headers, without the blank line that ends them."""
        origin = self._origins[self._origin_of[home]]
        lines = [f"{method} {path} HTTP/1.1", f"Host: {origin.host_header}"]
        lines.append(f"User-Agent: {USER_AGENT}")
        lines += [f"{name}: {value}" for name, value in extra.items()]
        return "\r\n".join(lines) + "\r\n"


def _path_prefix(url: str) -> str:
    parts = urlsplit(url)
    return parts.path.rstrip("/")


@dataclass
class KvProbe(Probe):
    """The demo KV protocol; see the module docstring."""

    write_ratio: float = 0.3
    keys: int = 200
    run_id: str = "run"
    writes = True
    _get: list[dict[int, bytes]] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.write_ratio <= 1 or self.keys < 1 or not self.run_id:
            raise ValueError("need 0 <= write_ratio <= 1, keys >= 1 and a run_id")
        self._get = [{} for _ in self.homes]

    @property
    def region_header(self) -> str | None:
        return REGION_HEADER

    def _headers(self, home: int) -> dict[str, str]:
        name = self.homes[home]
        return {HOME_HEADER: name} if name is not None else {}

    def _path(self, home: int, key: int) -> str:
        return f"{_path_prefix(self.urls[home])}/kv/k{key}"

    def request(self, home: int, seq: int, rng: random.Random) -> Request:
        key = int(rng.random() * self.keys)
        origin = self._origin_of[home]
        if rng.random() < self.write_ratio:
            body = write_value(self.run_id, seq).encode()
            head = self._head(home, "PUT", self._path(home, key), self._headers(home))
            data = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
            return Request(origin, data, write=True, key=key, head=False)
        cache = self._get[home]
        get = cache.get(key)
        if get is None:
            get = cache[key] = (
                self._head(home, "GET", self._path(home, key), self._headers(home)) + "\r\n"
            ).encode()
        return Request(origin, get, write=False, key=key, head=False)

    def judge(self, home: int, request: Request, x: Exchange) -> Verdict:
        # every answer below 500 served (a 404 read of a missing key is correct)
        acked = request.write and 200 <= x.status < 300
        return Verdict(None, self.served_by(home, x.header), acked)


@dataclass
class HttpProbe(Probe):
    """Any HTTP service; see the module docstring."""

    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    expect_status: frozenset[int] = frozenset()
    body_contains: str | None = None
    body_matches: str | None = None
    header: str | None = None
    _requests: list[Request] = field(init=False, repr=False, default_factory=list)
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._pattern = re.compile(self.body_matches) if self.body_matches else None
        body = self.body.encode() if self.body is not None else None
        for home, name in enumerate(self.homes):
            extra = {k: v.replace("{home}", name or "") for k, v in self.headers.items()}
            if body is not None:
                extra["Content-Length"] = str(len(body))
            path = _path_prefix(self.urls[home]) + self.path
            data = (self._head(home, self.method, path, extra) + "\r\n").encode() + (body or b"")
            self._requests.append(
                Request(self._origin_of[home], data, write=False, key=0, head=self.method == "HEAD")
            )

    @property
    def region_header(self) -> str | None:
        return self.header

    @property
    def read_body(self) -> bool:
        return self.body_contains is not None or self.body_matches is not None

    def request(self, home: int, seq: int, rng: random.Random) -> Request:
        return self._requests[home]

    def judge(self, home: int, request: Request, x: Exchange) -> Verdict:
        served_by = self.served_by(home, x.header)
        status = x.status
        if status >= 500:
            return Verdict(None, served_by)  # a failure by its status, like the kv probe's
        if not (status in self.expect_status if self.expect_status else 200 <= status < 300):
            return Verdict("status", served_by)
        if self.body_contains is not None or self._pattern is not None:
            text = x.body.decode("utf-8", "replace")
            if self.body_contains is not None and self.body_contains not in text:
                return Verdict("body", served_by)
            if self._pattern is not None and self._pattern.search(text) is None:
                return Verdict("body", served_by)
        return Verdict(None, served_by)


# --------------------------------------------------------------------------- building


def kv_probe(
    entry_url: str | None,
    region_urls: Mapping[str, str],
    homes: Sequence[str | None],
    *,
    write_ratio: float,
    keys: int,
    run_id: str,
) -> KvProbe:
    """The demo probe: through ``entry_url``, or (None) to each home's own region URL, whose
    region then serves the request unless the answer names another."""
    urls, regions = _routes(entry_url, region_urls, homes, "without entry_url every home")
    return KvProbe(list(homes), urls, regions, write_ratio=write_ratio, keys=keys, run_id=run_id)


def http_probe(
    spec: HttpProbeSpec,
    entry_url: str | None,
    region_urls: Mapping[str, str],
    homes: Sequence[str | None],
) -> HttpProbe:
    """An HTTP probe from ``spec.traffic.probe``; its own ``url``/``endpoints`` take
    precedence over the target's entry point and region endpoints."""
    entry = spec.url or entry_url
    endpoints = {**region_urls, **spec.endpoints}
    via = spec.via or ("entry" if entry else "regions")
    if via == "entry" and not entry:
        raise ProbeConfigError(
            "spec.traffic.probe.url: via entry needs a global URL (here, target.url or the "
            "target's own entry point)"
        )
    urls, regions = _routes(
        entry if via == "entry" else None,
        endpoints,
        homes,
        "spec.traffic.probe.endpoints: via regions, every home",
    )
    return HttpProbe(
        list(homes),
        urls,
        regions,
        method=spec.method,
        path=spec.path,
        headers=dict(spec.headers),
        body=spec.body,
        expect_status=frozenset(spec.expect_status),
        body_contains=spec.body_contains,
        body_matches=spec.body_matches,
        header=spec.region_header,
    )


def _routes(
    entry_url: str | None,
    region_urls: Mapping[str, str],
    homes: Sequence[str | None],
    what: str,
) -> tuple[list[str], list[str | None]]:
    if entry_url is not None:
        return [entry_url] * len(homes), [None] * len(homes)
    missing = [h for h in homes if h is None or h not in region_urls]
    if missing:
        names = ", ".join(h or "(none)" for h in missing)
        raise ProbeConfigError(f"{what} needs a URL of its own region; missing: {names}")
    return [region_urls[h] for h in homes if h is not None], list(homes)
