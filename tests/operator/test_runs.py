"""GameDayRun objects without a cluster: manifests, validation, status, history, secrets."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from chaosaa.engine.reporting import new_report
from chaosaa.engine.verdict import finish, slo_result
from chaosaa.errors import InvalidInputError, SpecError
from chaosaa.operator import runs
from chaosaa.operator.kubeconfigs import merge
from chaosaa.report.model import FaultResult
from chaosaa.spec.status import GameDayRunSpec

SPEC: dict[str, Any] = {
    "target": {"kind": "lab", "regions": {"us": {}, "eu": {}}},
    "faults": [{"name": "eu-dark", "type": "blackhole", "regions": ["eu"], "duration": "4s"}],
    "slos": [
        {"name": "failover", "type": "failoverTime", "max": "30s"},
        {"name": "lag", "type": "replicationLag", "max": "10s"},
        {"name": "errors", "type": "errorRate", "max": 0.01},
    ],
    "schedule": "0 10 1 * *",
}


def gameday_object(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "chaosaa.io/v1alpha1",
        "kind": "GameDay",
        "metadata": {"name": "region-down", "namespace": "chaos", "uid": "u-1", "generation": 2},
        "spec": copy.deepcopy(spec or SPEC),
    }


def test_a_run_manifest_freezes_the_spec_and_is_owned_by_its_gameday() -> None:
    body = runs.run_manifest(
        gameday_object(), name="region-down-1", trigger="schedule", scheduled=1_795_000_000.0
    )
    assert body["metadata"]["labels"] == {
        "chaosaa.io/gameday": "region-down",
        "chaosaa.io/trigger": "schedule",
    }
    owner = body["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "GameDay",
        "region-down",
        "u-1",
        True,
    )
    assert body["spec"]["scheduledTime"] == "2026-11-18T11:06:40Z"
    assert body["spec"]["gameDaySpec"] == SPEC
    GameDayRunSpec.model_validate(body["spec"])  # what the CRD schema is rendered from
    assert runs.run_gameday(body).spec.faults[0].name == "eu-dark"


def test_validation_names_namespace_name_field_and_reason() -> None:
    spec = copy.deepcopy(SPEC)
    spec["faults"][0]["regions"] = ["mars"]
    with pytest.raises(SpecError) as err:
        runs.validate_object(gameday_object(spec))
    assert err.value.problems == [
        "chaos/region-down: spec.faults[0]: region(s) mars not in target.regions (eu, us)"
    ]


def test_the_type_of_an_slo_max_is_checked_per_slo_type() -> None:
    spec = copy.deepcopy(SPEC)
    spec["slos"][0]["max"] = 30  # failoverTime takes a duration
    with pytest.raises(SpecError, match=r"spec.slos\[0\].max"):
        runs.validate_object(gameday_object(spec))


def test_a_kubeconfig_secret_in_another_namespace_is_refused() -> None:
    spec = copy.deepcopy(SPEC)
    spec["target"]["regions"]["eu"] = {"kubeconfigSecret": {"name": "eu", "namespace": "other"}}
    with pytest.raises(SpecError, match="must be in the GameDay's namespace"):
        runs.validate_object(gameday_object(spec))
    spec["target"]["regions"]["eu"]["kubeconfigSecret"]["namespace"] = "chaos"
    runs.validate_object(gameday_object(spec))


def test_a_finished_report_becomes_the_run_status() -> None:
    gameday = runs.validate_object(gameday_object())
    report = new_report(gameday, started_at=100.0, run_id="r")
    report.record_fault(
        FaultResult(
            name="eu-dark",
            type="blackhole",
            requested_at=101.0,
            effective_at=101.25,
            reverted_at=106.0,
            time_to_effect_seconds=0.25,
            time_to_revert_seconds=0.01,
            scope="regions eu",
        )
    )
    report.record_slo(
        slo_result(gameday.spec.slos[0], 4.2, source="probe", error_bound_seconds=0.02)
    )
    report.record_slo(slo_result(gameday.spec.slos[1], 1.5, source="prometheus"))
    report.record_slo(slo_result(gameday.spec.slos[2], 0.001))
    report.traffic.requests, report.traffic.errors = 500, 3
    finish(report, finished_at=130.0)
    status = runs.status_from_report(report)
    assert (status.phase, status.verdict, status.exit_code) == ("Succeeded", "passed", 0)
    assert (status.failover_seconds, status.peak_lag_seconds) == (4.2, 1.5)
    assert status.faults[0].effective_at == "1970-01-01T00:01:41.250Z"
    assert [s.verdict for s in status.slos] == ["passed", "passed", "passed"]
    assert status.summary is not None and status.summary.requests == 500
    patch = runs.status_patch(status)["status"]
    assert patch["failoverSeconds"] == 4.2 and patch["faults"][0]["timeToEffectSeconds"] == 0.25

    report.record_slo(slo_result(gameday.spec.slos[0], 45.0, source="probe"))
    finish(report, finished_at=130.0)
    failed = runs.status_from_report(report)
    assert (failed.phase, failed.verdict, failed.exit_code) == ("Failed", "failed", 1)


def _run(name: str, phase: str | None, created: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"phase": phase} if phase else {},
    }


def test_history_limits_delete_the_oldest_finished_runs_only() -> None:
    existing = [
        _run("a", "Succeeded", "2026-01-01T00:00:00Z"),
        _run("b", "Failed", "2026-01-01T00:01:00Z"),
        _run("c", "Succeeded", "2026-01-01T00:02:00Z"),
        _run("d", "Error", "2026-01-01T00:03:00Z"),
        _run("e", "Interrupted", "2026-01-01T00:04:00Z"),
        _run("f", "Running", "2026-01-01T00:00:30Z"),
        _run("g", None, "2026-01-01T00:00:10Z"),
        _run("h", "Succeeded", "2026-01-01T00:05:00Z"),
    ]
    assert runs.runs_to_delete(existing, successful=2, failed=1) == ["a", "b", "d"]
    assert runs.runs_to_delete(existing, successful=0, failed=0) == ["a", "c", "h", "b", "d", "e"]


def _kubeconfig(cluster: str, server: str, user: str, context: str) -> dict[str, Any]:
    return {
        "clusters": [{"name": cluster, "cluster": {"server": server}}],
        "users": [{"name": user, "user": {"token": server}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
    }


def test_kubeconfigs_from_several_secrets_merge_without_clobbering_each_other() -> None:
    spec = copy.deepcopy(SPEC)
    spec["target"] = {
        "kind": "kubernetes",
        "regions": {
            "us": {"context": "prod-us", "kubeconfigSecret": {"name": "us"}},
            "eu": {"context": "prod-eu", "kubeconfigSecret": {"name": "eu"}},
        },
    }
    spec["slos"] = [spec["slos"][0], spec["slos"][2]]
    gameday = runs.validate_object(gameday_object(spec))
    docs = {
        # both Secrets call their cluster and user "default", as exported kubeconfigs do
        "us": _kubeconfig("default", "https://us", "default", "prod-us"),
        "eu": _kubeconfig("default", "https://eu", "default", "prod-eu"),
    }
    merged = merge(docs, gameday)
    contexts = {c["name"]: c["context"] for c in merged["contexts"]}
    clusters = {c["name"]: c["cluster"]["server"] for c in merged["clusters"]}
    assert clusters[contexts["prod-us"]["cluster"]] == "https://us"
    assert clusters[contexts["prod-eu"]["cluster"]] == "https://eu"
    assert merged["current-context"] == "prod-us"
    docs["eu"] = _kubeconfig("x", "https://eu", "y", "prod-us")  # same context, other cluster
    with pytest.raises(InvalidInputError, match="context 'prod-us' differently"):
        merge(docs, gameday)
