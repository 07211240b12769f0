"""spec.datastores: credentials by reference only; errors as FILE:LINE: FIELD: REASON."""

from __future__ import annotations

import textwrap

import pytest

from chaosaa.canary import connections
from chaosaa.errors import ExitCode, InvalidInputError, SpecError
from chaosaa.spec.datastores import Datastore
from chaosaa.spec.loader import load_gameday_text

GAMEDAY = """\
apiVersion: chaosaa.io/v1alpha1
kind: GameDay
metadata: {{name: orders}}
spec:
  target: {{kind: lab, regions: {{us: {{}}, eu: {{}}}}}}
  datastores:
    - name: orders
      kind: postgres
      database: shop
      credentials:
        username: canary
{credentials}
      regions:
        us: {{host: orders.us.internal}}
        eu: {{host: orders.eu.internal, port: 6432}}
"""


def _load(credentials: str) -> list[Datastore]:
    text = GAMEDAY.format(credentials=textwrap.indent(credentials, " " * 8))
    return load_gameday_text(text, "orders.yaml").spec.datastores


def test_a_password_in_the_file_is_refused_with_file_line_and_field() -> None:
    with pytest.raises(SpecError) as err:
        _load("password: hunter2")
    assert err.value.exit_code == ExitCode.INVALID
    (problem,) = err.value.problems
    assert problem.startswith("orders.yaml:12: spec.datastores[0].credentials.password: ")
    assert "must not be written in the GameDay file" in problem and "hunter2" not in problem


def test_password_from_env_is_resolved_at_run_time_only() -> None:
    (ds,) = _load("passwordFrom: {env: ORDERS_PASSWORD}")
    conns = connections(ds, env={"ORDERS_PASSWORD": "s3cret"})
    assert conns["eu"].port == 6432 and conns["us"].port == 5432
    assert conns["us"].password == "s3cret" and "s3cret" not in repr(conns["us"])
    with pytest.raises(InvalidInputError, match="ORDERS_PASSWORD is not set"):
        connections(ds, env={})


def test_secret_key_ref_needs_a_kubernetes_reader() -> None:
    (ds,) = _load("passwordFrom: {secretKeyRef: {name: orders-db, key: password}}")
    assert connections(ds, env={}, read_secret=lambda ref: f"{ref.name}:{ref.key}")[
        "us"
    ].password == ("orders-db:password")
    with pytest.raises(InvalidInputError, match="secretKeyRef"):
        connections(ds, env={})


def test_no_password_source_is_an_error() -> None:
    with pytest.raises(SpecError, match="no passwordFrom"):
        _load("# no passwordFrom")


def test_datastore_regions_must_be_target_regions() -> None:
    text = GAMEDAY.format(credentials=" " * 8 + "passwordFrom: {env: P}").replace(
        "eu: {host: orders.eu.internal", "ap: {host: orders.ap.internal"
    )
    with pytest.raises(SpecError, match=r"spec.datastores\[0\].regions.ap: region 'ap' not in"):
        load_gameday_text(text, "orders.yaml")


def test_target_system_is_a_lab_field() -> None:
    text = GAMEDAY.format(credentials=" " * 8 + "passwordFrom: {env: P}")
    lab = text.replace("{kind: lab,", "{kind: lab, system: postgres-aa,")
    assert load_gameday_text(lab, "orders.yaml").spec.target.system == "postgres-aa"
    with pytest.raises(SpecError, match="system applies only to target kind lab"):
        load_gameday_text(lab.replace("kind: lab", "kind: kind"), "orders.yaml")
    with pytest.raises(SpecError, match=r"spec\.target\.system"):
        load_gameday_text(lab.replace("postgres-aa", "oracle"), "orders.yaml")
