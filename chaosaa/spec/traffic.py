"""``spec.traffic``: the load a GameDay drives and the probe that judges each request.

A rate per home region or one rate shared by the homes, shaped by stages (constant, ramp,
step), and the probe: the demo's KV protocol (the default) or any HTTP service.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from chaosaa.spec.types import Duration, Model, RegionName

#: schema ceiling of any traffic rate (req/s); what a run may ask for is the smaller
#: capacity of the machine it runs on (``chaosaa.traffic.capacity``), checked at start
MAX_RATE = 200_000.0

RequestRate = Annotated[float, Field(ge=0, le=MAX_RATE)]


class ConstantStage(Model):
    """Hold one rate for a while."""

    type: Literal["constant"]
    rate: RequestRate = Field(description="requests per second")
    duration: Duration = Field(gt=0, description="how long the stage lasts")


class RampStage(Model):
    """Change the rate linearly from ``from`` to ``to``."""

    type: Literal["ramp"]
    from_: RequestRate | None = Field(
        None, alias="from", description="start rate (default: the rate before this stage)"
    )
    to: RequestRate = Field(description="rate at the end of the stage")
    duration: Duration = Field(gt=0, description="how long the stage lasts")


class StepStage(Model):
    """A staircase from ``from`` to ``to`` in ``steps`` equal steps of equal length."""

    type: Literal["step"]
    from_: RequestRate | None = Field(
        None, alias="from", description="rate before the first step (default: the rate before)"
    )
    to: RequestRate = Field(description="rate of the last step")
    steps: int = Field(ge=1, le=1000, description="number of steps; each lasts duration/steps")
    duration: Duration = Field(gt=0, description="how long the whole staircase lasts")


Stage = Annotated[ConstantStage | RampStage | StepStage, Field(discriminator="type")]
STAGE_TYPES = ("constant", "ramp", "step")


def stage_rates(stage: Stage) -> list[float]:
    """The rates a stage names (its ``from`` only when given)."""
    if isinstance(stage, ConstantStage):
        return [stage.rate]
    return [stage.to] if stage.from_ is None else [stage.from_, stage.to]


class RegionLoad(Model):
    """The load one home region's clients put on the system."""

    rate: RequestRate = Field(
        0.0, description="requests per second from this home (the start rate of stages)"
    )
    stages: list[Stage] = Field(
        default_factory=list,
        description="shape over time from the start of traffic; the last rate holds until the end",
    )

    @model_validator(mode="after")
    def _some_load(self) -> Self:
        if self.rate <= 0 and not any(r > 0 for s in self.stages for r in stage_rates(s)):
            raise ValueError("give a rate > 0 or stages that reach one")
        return self


class KvProbe(Model):
    """The demo KV protocol (the default), the only probe that writes (for lostWrites).

    ``GET``/``PUT {url}/kv/{key}`` with ``X-Chaosaa-Home``; the serving region from
    ``X-Chaosaa-Region``; every acknowledged write goes to the ledger."""

    type: Literal["kv"]


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_HEADER_NAME = r"^[A-Za-z0-9!#$%&*+.^_`|~-]+$"


class HttpProbe(Model):
    """Any HTTP service, judged by the status and optionally the body of its answers.

    One request per probe; the serving region comes from ``regionHeader``, else from the
    endpoint used (a region's own endpoint serves its region)."""

    EXAMPLE: ClassVar[str] = """
traffic:
  rate: 200
  probe:
    type: http
    method: GET
    path: /api/health?deep=1
    headers: {Accept: application/json, X-Client-Home: "{home}"}
    expectStatus: [200]
    bodyMatches: '"status":\\s*"ok"'
    regionHeader: X-Served-By        # else: the region of the endpoint used
    url: https://shop.example.com    # global entry point (default: target.url)
    endpoints:                       # used with via: regions
      us: https://us.shop.example.com
      eu: https://eu.shop.example.com
    via: entry
"""

    type: Literal["http"]
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    path: str = Field(
        "/", pattern=r"^/[^\s]*$", description="path and query, appended to the URL's own path"
    )
    headers: dict[Annotated[str, Field(pattern=_HEADER_NAME)], str] = Field(
        default_factory=dict,
        description="request headers; {home} in a value becomes the client's home region",
    )
    body: str | None = Field(None, description="request body (UTF-8)")
    expect_status: list[Annotated[int, Field(ge=100, le=499)]] = Field(
        default_factory=list,
        description="statuses that count as success (default: any 2xx); a 5xx never does",
    )
    body_contains: str | None = Field(
        None, min_length=1, description="success also needs this text in the response body"
    )
    body_matches: str | None = Field(
        None, min_length=1, description="success also needs this regular expression to match"
    )
    region_header: str | None = Field(
        None,
        pattern=_HEADER_NAME,
        description="response header that names the serving region (default: the endpoint's)",
    )
    url: str | None = Field(
        None, description="global entry point (default: target.url or the target's own)"
    )
    endpoints: dict[RegionName, str] = Field(
        default_factory=dict,
        description="per-region endpoints (default: target.regions.NAME.endpoint or the "
        "target's own)",
    )
    via: Literal["entry", "regions"] | None = Field(
        None,
        description="entry: every home through the global URL; regions: each home to its own "
        "region's endpoint (default: entry when there is one)",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("endpoints")
    @classmethod
    def _http_endpoints(cls, value: dict[str, str]) -> dict[str, str]:
        for region, url in value.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{region}: must start with http:// or https://")
        return value

    @field_validator("body_matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_body_check(self) -> Self:
        if self.body_contains is not None and self.body_matches is not None:
            raise ValueError("give at most one of bodyContains or bodyMatches")
        if self.body is not None and self.method in ("GET", "HEAD", "OPTIONS"):
            raise ValueError(f"a {self.method} request carries no body")
        if self.method == "HEAD" and (self.body_contains or self.body_matches):
            raise ValueError("a HEAD response has no body to check")
        return self


Probe = Annotated[KvProbe | HttpProbe, Field(discriminator="type")]
PROBE_TYPES = ("kv", "http")


class Traffic(Model):
    """Open-loop load from clients in each home region; also the failover probe."""

    EXAMPLE: ClassVar[str] = """
traffic:                     # every region at 100 req/s; ap ramps to 600 and back
  load:
    us: {rate: 100}
    eu: {rate: 100}
    ap:
      rate: 100
      stages:
        - {type: constant, rate: 100, duration: 20s}
        - {type: ramp, to: 600, duration: 30s}
        - {type: step, to: 100, steps: 5, duration: 50s}
---
traffic:                     # the total over every region climbs 100 -> 400 in 3 steps
  rate: 100
  stages:
    - {type: step, to: 400, steps: 3, duration: 60s}
"""

    rate: RequestRate = Field(
        50.0,
        gt=0,
        description="requests per second over all homes, open loop (the start rate of stages)",
    )
    stages: list[Stage] = Field(
        default_factory=list,
        description="shape of the total rate over time from the start of traffic (constant, "
        "ramp, step); the last rate holds until the end",
    )
    homes: list[RegionName] = Field(
        default_factory=list,
        description="home regions the clients claim (X-Chaosaa-Home), default: every region",
    )
    load: dict[RegionName, RegionLoad] = Field(
        default_factory=dict,
        description="a rate and stages per home region, instead of rate, stages and homes",
    )
    probe: Probe = Field(
        default_factory=lambda: KvProbe(type="kv"),
        description="how a request is made and judged: kv (the demo, default) or http",
    )
    write_ratio: float = Field(0.3, ge=0, le=1, description="share of requests that are writes")
    duration: Duration | Literal["auto"] = Field(
        "auto", description="auto covers warm-up + faults + recovery"
    )
    warmup: Duration = Field(5.0, ge=0, description="traffic before the steady-state check")
    timeout: Duration = Field(1.0, gt=0, description="per-request timeout")
    keys: int = Field(200, ge=1, le=1_000_000, description="size of the written key space")

    @model_validator(mode="after")
    def _one_way_to_set_load(self) -> Self:
        if self.load:
            clash = sorted({"rate", "stages", "homes"} & self.model_fields_set)
            if clash:
                raise ValueError(
                    f"give either load (a rate per home) or {'/'.join(clash)}, not both"
                )
        if self.probe.type == "http" and "write_ratio" in self.model_fields_set:
            raise ValueError("writeRatio applies to the kv probe only (an http probe never writes)")
        return self
