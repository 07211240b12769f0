"""The GameDay format (DESIGN.md section 2) as pydantic models.

These models are the single source for validation, for ``chaosaa plan`` and for the CRD's
openAPIV3Schema. Field names are camelCase in YAML and snake_case in Python.
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from chaosaa.durations import format_duration
from chaosaa.spec.datastores import Datastore
from chaosaa.spec.faults import Fault
from chaosaa.spec.traffic import Traffic
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


class LabCapacity(Model):
    """A lab region's service capacity: ``concurrency`` workers, each spending
    ``serviceTime`` on a request, ``queue`` more waiting; beyond that, 503 at once."""

    concurrency: int | None = Field(
        None, ge=1, le=100_000, description="requests served at once (default: no limit)"
    )
    service_time: Duration = Field(
        0.0,
        ge=0,
        le=60,
        description="time each request holds a worker, waited rather than computed so that "
        "regions sharing this machine's CPUs stay independent",
    )
    queue: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="requests that may wait for a worker; one more is refused with 503 "
        "(default: no limit, they wait until their clients time out)",
    )

    def over(self, base: LabCapacity | None) -> LabCapacity:
        """This capacity's fields over ``base``'s (the fields given here win)."""
        if base is None:
            return self
        return base.model_copy(update={k: getattr(self, k) for k in self.model_fields_set})

    def describe(self) -> str:
        """``4 workers x 25ms = 160 req/s, queue 8``."""
        workers = "no worker limit" if self.concurrency is None else f"{self.concurrency} workers"
        text = f"{workers} x {format_duration(self.service_time)}"
        if self.concurrency is not None and self.service_time > 0:
            text += f" = {self.concurrency / self.service_time:g} req/s"
        return text + (f", queue {self.queue}" if self.queue is not None else "")


class LabSettings(Model):
    """How the local lab is set up for the run (target kind lab); the lab's own settings
    come back when the run ends."""

    capacity: LabCapacity | None = Field(
        None, description="every region's service capacity (default: the lab's own)"
    )


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
    capacity: LabCapacity | None = Field(
        None, description="lab: this region's capacity, field by field over target.lab.capacity"
    )

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
    lab: LabSettings | None = Field(None, description="lab: how the lab is set up for the run")

    EXAMPLE: ClassVar[str] = """
target:                      # eu and us serve 160 req/s each, ap half that
  kind: lab
  regions:
    us: {}
    eu: {}
    ap: {capacity: {concurrency: 2}}
  lab:
    capacity: {concurrency: 4, serviceTime: 25ms, queue: 8}
"""

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
            if self.kind != "lab" and region.capacity:
                raise ValueError(f"regions.{name}.capacity applies only to target kind lab")
        if self.kind != "lab" and self.lab is not None:
            raise ValueError("lab applies only to target kind lab")
        if self.system is not None and self.kind != "lab":
            raise ValueError("system applies only to target kind lab")
        return self

    def lab_capacity(self) -> dict[str, LabCapacity]:
        """Region -> the capacity the GameDay sets (empty: it sets none)."""
        base = self.lab.capacity if self.lab is not None else None
        out = {}
        for name, region in self.regions.items():
            own = region.capacity.over(base) if region.capacity is not None else base
            if own is not None:
                out[name] = own
        return out


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


class WindowedSLO(SLOBase):
    """An SLO judged over a window of the run: while the faults are in place (or one of
    them), or the whole run. Subclasses set the default ``window``."""

    window: Literal["faults", "run"]
    fault: str | None = Field(
        None,
        description="window faults: this fault's, from in place to reverted (default: from "
        "the first fault in place to the last reverted)",
    )
    settle: Duration = Field(
        0.0,
        ge=0,
        description="window faults: start this long after the fault is in place, leaving the "
        "failover itself to failoverTime",
    )
    regions: list[RegionName] = Field(
        default_factory=list,
        max_length=16,
        description="serving regions whose requests count; a failure no region answered "
        "counts for its client's home (default: every region)",
    )
    homes: list[RegionName] = Field(
        default_factory=list,
        max_length=16,
        description="home regions whose clients' requests count, wherever they were served "
        "(default: every home); e.g. the majority's homes, which must keep being served while "
        "a minority region refuses writes",
    )

    @model_validator(mode="after")
    def _fault_window_fields(self) -> Self:
        if self.window == "run":
            given = sorted({"fault", "settle"} & self.model_fields_set)
            if given:
                verb = "apply" if len(given) > 1 else "applies"
                raise ValueError(f"{' and '.join(given)} {verb} to window faults, not run")
        return self


class ErrorRateSLO(WindowedSLO):
    """Failed / all requests of the probe (or a PromQL error ratio) over a window. ``homes``
    and ``regions`` scope it to the clients or serving regions that must stay available:
    when a minority region refuses writes by design (quorum), the majority's clients must
    not see errors."""

    EXAMPLE: ClassVar[str] = """
slos:            # ap is cut off; us's and eu's clients must keep being served
  - {name: majority-serves, type: errorRate, max: 0.01, homes: [us, eu]}
  - {name: writes-available, type: errorRate, max: 0.01, requests: writes}
"""

    type: Literal["errorRate"]
    max: float = Field(ge=0, le=1, description="failed / all requests in the window")
    window: Literal["faults", "run"] = Field(
        "run", description="run: from the start of injection to the end; faults: see fault"
    )
    source: Literal["probe", "prometheus"] = "probe"
    promql: str | None = Field(None, description="error ratio series (source prometheus)")
    requests: Literal["all", "reads", "writes"] = Field(
        "all",
        description="which requests count (probe): writes, to hold the service to accepting "
        "writes, not only answering reads",
    )

    @model_validator(mode="after")
    def _requests_from_the_probe(self) -> Self:
        if self.source != "probe":
            given = [
                f for f in ("requests", "regions", "homes") if getattr(self, f) not in ("all", [])
            ]
            if given:
                verb = "apply" if len(given) > 1 else "applies"
                raise ValueError(f"{' and '.join(given)} {verb} to source probe only")
        return self


class LatencySLO(WindowedSLO):
    """A percentile of the probe's latency over a window, overall or in every serving
    region, compared with the same before the faults."""

    EXAMPLE: ClassVar[str] = """
slos:            # after eu dies, us and ap serve its clients with p99 <= 250ms, <= 1% errors
  - name: eu-clients-p99
    type: latency
    percentile: 99
    max: 250ms
    fault: eu-down
    settle: 5s                       # the failover itself is failoverTime's business
    homes: [eu]                      # eu's clients, wherever they are served
  - {name: survivors-p99, type: latency, max: 250ms, fault: eu-down, settle: 5s, perRegion: true}
  - {name: errors, type: errorRate, max: 0.01, window: faults, fault: eu-down, settle: 5s}
"""

    type: Literal["latency"]
    max: Duration = Field(gt=0, description="objective: the percentile is at most this")
    percentile: float = Field(
        99.0, gt=0, lt=100, description="which percentile: 50, 95, 99, 99.9, ..."
    )
    window: Literal["faults", "run"] = Field(
        "faults",
        description="faults: while the faults are in place (see fault, settle); run: from the "
        "start of injection to the end",
    )
    per_region: bool = Field(
        False,
        description="every serving region must meet max on its own (measured: the slowest); "
        "default: the percentile over every counted request",
    )
    failures: Literal["exclude", "slowest"] = Field(
        "exclude",
        description="exclude: only served requests count (pair with errorRate); slowest: a "
        "failed request counts as slower than any answer",
    )

    @property
    def quantile(self) -> float:
        return self.percentile / 100


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
    FailoverTimeSLO | ReplicationLagSLO | LostWritesSLO | ErrorRateSLO | LatencySLO | PromQLSLO,
    Field(discriminator="type"),
]
SLO_TYPES = ("failoverTime", "replicationLag", "lostWrites", "errorRate", "latency", "promql")


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
        max_length=8,
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
