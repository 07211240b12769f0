"""spec.datastores: credentials by reference only; errors as FILE:LINE: FIELD: REASON."""

from __future__ import annotations

import textwrap

import pytest

from chaosaa.canary import connections
from chaosaa.errors import ExitCode, InvalidInputError, SpecError
from chaosaa.spec.datastores import validate_datastores
from chaosaa.spec.loader import parse_yaml

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


def _load(credentials: str) -> object:
    text = GAMEDAY.format(credentials=textwrap.indent(credentials, " " * 8))
    data, lines = parse_yaml(text, "orders.yaml")
    return validate_datastores(data, "orders.yaml", lines)


def test_a_password_in_the_file_is_refused_with_file_line_and_field() -> None:
    with pytest.raises(SpecError) as err:
        _load("password: hunter2")
    assert err.value.exit_code == ExitCode.INVALID
    (problem,) = err.value.problems
    assert problem.startswith("orders.yaml:12: spec.datastores[0].credentials.password: ")
    assert "must not be written in the GameDay file" in problem and "hunter2" not in problem


def test_password_from_env_is_resolved_at_run_time_only() -> None:
    (ds,) = _load("passwordFrom: {env: ORDERS_PASSWORD}")  # type: ignore[misc]
    conns = connections(ds, env={"ORDERS_PASSWORD": "s3cret"})
    assert conns["eu"].port == 6432 and conns["us"].port == 5432
    assert conns["us"].password == "s3cret" and "s3cret" not in repr(conns["us"])
    with pytest.raises(InvalidInputError, match="ORDERS_PASSWORD is not set"):
        connections(ds, env={})


def test_secret_key_ref_needs_a_kubernetes_reader() -> None:
    (ds,) = _load("passwordFrom: {secretKeyRef: {name: orders-db, key: password}}")  # type: ignore[misc]
    assert connections(ds, env={}, read_secret=lambda ref: f"{ref.name}:{ref.key}")[
        "us"
    ].password == ("orders-db:password")
    with pytest.raises(InvalidInputError, match="secretKeyRef"):
        connections(ds, env={})


def test_no_password_source_is_an_error() -> None:
    with pytest.raises(SpecError, match="no passwordFrom"):
        _load("# no passwordFrom")
