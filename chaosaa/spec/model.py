"""The GameDay format (DESIGN.md section 2) as pydantic models.

These models are the single source for validation, for ``chaosaa plan`` and for the CRD's
openAPIV3Schema. Field names are camelCase in YAML and snake_case in Python.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from chaosaa.spec.datastores import Datastore
from chaosaa.spec.faults import Fault
from chaosaa.spec.types import (
    NAME_PATTERN,
    Duration,
    Expect,
    Expectation,
    Model,
    RegionName,
)

API_VERSION = "chaosaa.io/v1alpha1"


# --------------------------------------------------------------------------- target


class KubeconfigSecretRef(Model):
    """A Secret holding a kubeconfig for a remote region (operator only)."""

    name: str = Field(min_length=1)
    key: str = "kubeconfig"
    namespace: str | None = None


class RegionTarget(Model):
    """How one region is reached. Which fields apply depends on ``target.kind``."""

    cluster: str | None = Field(None, description="kind: cluster name (default: the region name)")
    context: str | None = Field(None, description="kubernetes: kubeconfig context")
    namespace: str | None = Field(None, description="kubernetes: namespace of the service")
    namespaces: list[str] = Field(default_factory=list, description="kubernetes: more namespaces")
    endpoint: str | None = Field(
        None, description="URL of the service in this region (per-region reads and canaries)"
    )
    kubeconfig_secret: KubeconfigSecretRef | None = None

    def all_namespaces(self) -> list[str]:
        names = [self.namespace] if self.namespace else []
        return names + [n for n in self.namespaces if n not in names]


#: what a lab can run in its regions (``chaosaa lab up --system``)
LAB_SYSTEMS = ("demo", "postgres-ha", "postgres-aa", "galera")


class Target(Model):
    kind: Literal["lab", "kind", "kubernetes"] = Field(
        description="lab (local processes), kind (kind clusters via docker), kubernetes (contexts)"
    )
    system: Literal["demo", "postgres-ha", "postgres-aa", "galera"] | None = Field(
        None,
        description="lab: what runs in the regions: demo (SQLite, the default), postgres-ha "
        "(a primary and streaming standbys), postgres-aa (pglogical both ways), galera "
        "(MariaDB Galera); a running lab must run this system",
    )
    regions: dict[RegionName, RegionTarget] = Field(
        min_length=1, description="failure domains by name, e.g. us, eu, ap"
    )
    url: str | None = Field(None, description="global entry point of the service (router, GSLB)")

    @field_validator("regions", mode="before")
    @classmethod
    def _empty_region_bodies(cls, value: object) -> object:
        # ``us:`` with nothing after it is YAML null; treat it as ``us: {}``.
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Self:
        for name, region in self.regions.items():
            if self.kind == "kubernetes" and not region.context:
                raise ValueError(f"regions.{name}.context is required for target kind kubernetes")
            if self.kind != "kubernetes" and (region.context or region.namespace):
                raise ValueError(
                    f"regions.{name}: context/namespace apply only to target kind kubernetes"
                )
            if self.kind != "kind" and region.cluster:
                raise ValueError(f"regions.{name}.cluster applies only to target kind kind")
        if self.system is not None and self.kind != "lab":
            raise ValueError("system applies only to target kind lab")
        return self


class Prometheus(Model):
    url: str | None = Field(None, description="base URL; optional for the lab, which supplies it")
    timeout: Duration = Field(10.0, gt=0)
    scrape_interval: Duration | None = Field(
        None, description="scrape interval of the series (default: read from Prometheus' config)"
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


# --------------------------------------------------------------------------- traffic


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


class Recovery(Model):
    settle: Duration = Field(5.0, ge=0, description="wait after the last revert before checks")
    convergence_timeout: Duration = Field(30.0, ge=0)


# --------------------------------------------------------------------------- SLOs


class SLOBase(Model):
    name: str = Field(pattern=NAME_PATTERN, description="unique among the SLOs")
    on_no_data: Literal["fail", "ignore"] = Field(
        "fail", description="no data is never a pass: fail (verdict unknown) or ignore"
    )


class FailoverTimeSLO(SLOBase):
    """Fault in place -> service healthy again and staying healthy for ``sustain``."""

    type: Literal["failoverTime"]
    max: Duration = Field(ge=0, description="objective")
    source: Literal["probe", "prometheus", "both"] = Field(
        "probe",
        description="probe: traffic generator; prometheus: range query; both: side by side "
        "(the verdict needs both)",
    )
    threshold: float = Field(0.99, gt=0, le=1, description="healthy = success ratio >= this")
    sustain: Duration = Field(5.0, gt=0)
    fault: str | None = Field(None, description="measure from this fault (default: the first)")
    promql: str | None = Field(None, description="success ratio series (source prometheus)")


class ReplicationLagSLO(SLOBase):
    type: Literal["replicationLag"]
    max: Duration = Field(ge=0, description="peak lag allowed during the faults")
    promql: str | None = Field(None, description="lag in seconds (the lab supplies a default)")
    recover_within: Duration | None = Field(
        None, ge=0, description="lag back under max within this long after the revert"
    )
    canary: bool = Field(True, description="also measure lag by writing canary keys")
    source: Literal["prometheus", "canary", "both"] | None = Field(
        None,
        description="prometheus: the lag query; canary: the datastore canaries; both: side "
        "by side (the verdict needs both). Default: every source the run has",
    )


class LostWritesSLO(SLOBase):
    type: Literal["lostWrites"]
    max: int = Field(
        0, ge=0, le=1_000_000_000, description="acknowledged writes allowed to be lost"
    )


class ErrorRateSLO(SLOBase):
    type: Literal["errorRate"]
    max: float = Field(ge=0, le=1, description="failed / all requests over the run")
    source: Literal["probe", "prometheus"] = "probe"
    promql: str | None = Field(None, description="error ratio series (source prometheus)")
    requests: Literal["all", "reads", "writes"] = Field(
        "all",
        description="which requests count (probe): writes, to hold the service to accepting "
        "writes, not only answering reads",
    )

    @model_validator(mode="after")
    def _requests_from_the_probe(self) -> Self:
        if self.requests != "all" and self.source != "probe":
            raise ValueError("requests applies to source probe only")
        return self


class PromQLSLO(SLOBase):
    """Generic: a PromQL expression over the run, aggregated, compared with ``expect``."""

    type: Literal["promql"]
    promql: str = Field(min_length=1, description="evaluated as a range query over the run")
    expect: Expect | None = Field(None, description="e.g. '< 5'")
    max: float | None = Field(None, description="shorthand for expect '<= max'")
    aggregate: Literal["max", "min", "avg", "last"] = Field(
        "max", description="how the series is reduced to one number"
    )

    @model_validator(mode="after")
    def _objective(self) -> Self:
        if (self.expect is None) == (self.max is None):
            raise ValueError("give exactly one of expect (e.g. '< 5') or max")
        return self

    @property
    def objective(self) -> Expectation:
        return self.expect if self.expect is not None else Expectation("<=", float(self.max or 0))


SLO = Annotated[
    FailoverTimeSLO | ReplicationLagSLO | LostWritesSLO | ErrorRateSLO | PromQLSLO,
    Field(discriminator="type"),
]
SLO_TYPES = ("failoverTime", "replicationLag", "lostWrites", "errorRate", "promql")


# --------------------------------------------------------------------------- checks


class SteadyStateCheck(Model):
    """Must hold before injection (else the run aborts) and again after recovery."""

    name: str = Field(pattern=NAME_PATTERN)
    promql: str = Field(min_length=1, description="instant query; every series must meet expect")
    expect: Expect = Field(description="e.g. '>= 0.99'")


class AbortRule(Model):
    """Stops the run early and reverts every fault when it stops holding."""

    name: str = Field(pattern=NAME_PATTERN)
    promql: str = Field(min_length=1, description="evaluated every second during injection")
    expect: Expect = Field(description="the run aborts when this stops holding for `for`")
    for_: Duration = Field(
        0.0, ge=0, alias="for", description="how long it must be violated before aborting"
    )


# --------------------------------------------------------------------------- GameDay


class Metadata(Model):
    name: str = Field(pattern=NAME_PATTERN)
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class GameDaySpec(Model):
    description: str = Field("", description="what the GameDay proves, for humans")
    target: Target
    prometheus: Prometheus = Field(default_factory=Prometheus)
    traffic: Traffic = Field(default_factory=Traffic)
    recovery: Recovery = Field(default_factory=Recovery)
    steady_state: list[SteadyStateCheck] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)
    slos: list[SLO] = Field(default_factory=list)
    abort: list[AbortRule] = Field(default_factory=list)
    datastores: list[Datastore] = Field(
        default_factory=list,
        description="replicated databases watched with canary rows (canary lag, lost and "
        "divergent canaries); a lab running a database system supplies its own",
    )
    # operator only
    schedule: str | None = Field(None, description="cron, 5 fields (operator only)")
    time_zone: str = Field("UTC", description="IANA zone of the schedule (operator only)")
    suspend: bool = Field(False, description="operator: do not start scheduled runs")
    concurrency_policy: Literal["Forbid", "Allow", "Replace"] = Field(
        "Forbid", description="operator: what to do when a run is still going"
    )
    starting_deadline_seconds: int | None = Field(
        None, ge=0, le=31_622_400, description="operator: a missed slot older than this is skipped"
    )
    successful_runs_history_limit: int = Field(3, ge=0, le=100)
    failed_runs_history_limit: int = Field(1, ge=0, le=100)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from croniter import croniter  # lazy: keeps `chaosaa validate` fast

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a 5-field cron expression (e.g. '0 10 1 * *')")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
        return value

    def fault_span(self) -> float:
        """Seconds from the start of injection until the last fault is reverted."""
        return max((f.after + f.duration for f in self.faults), default=0.0)


class GameDay(Model):
    api_version: Literal["chaosaa.io/v1alpha1"]
    kind: Literal["GameDay"]
    metadata: Metadata
    spec: GameDaySpec

    @property
    def name(self) -> str:
        return self.metadata.name
