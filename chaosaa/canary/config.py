"""Turn a GameDay's ``spec.datastores`` entry into connections, resolving credentials.

Credentials are read at run time, never from the file: ``env`` from the environment of the
process, ``secretKeyRef`` through ``read_secret`` (the operator and the kubernetes target
pass a reader backed by their Kubernetes client).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from chaosaa.canary.stores import Connection
from chaosaa.errors import InvalidInputError
from chaosaa.spec.datastores import Credentials, Datastore, SecretKeyRef, ValueFrom

SecretReader = Callable[[SecretKeyRef], str]


def _value(
    source: ValueFrom, what: str, env: Mapping[str, str], read_secret: SecretReader | None
) -> str:
    if source.env is not None:
        value = env.get(source.env)
        if value is None:
            raise InvalidInputError(f"{what}: environment variable {source.env} is not set")
        return value
    assert source.secret_key_ref is not None
    if read_secret is None:
        ref = source.secret_key_ref
        raise InvalidInputError(
            f"{what}: secretKeyRef {ref.name}/{ref.key} needs a Kubernetes client "
            "(operator or kubernetes target); use passwordFrom: {env: NAME} with the CLI"
        )
    return read_secret(source.secret_key_ref)


def connections(
    ds: Datastore,
    env: Mapping[str, str] | None = None,
    read_secret: SecretReader | None = None,
) -> dict[str, Connection]:
    """One resolved connection per region of ``ds``."""
    env = os.environ if env is None else env
    out = {}
    for region, body in ds.regions.items():
        creds: Credentials = body.credentials or ds.credentials
        where = f"datastore {ds.name}, region {region}"
        if creds.username_from is not None:
            user = _value(creds.username_from, f"{where}: username", env, read_secret)
        else:
            user = creds.username or ds.credentials.username or ""
        password_from = creds.password_from or ds.credentials.password_from
        assert password_from is not None  # the model requires one
        password = _value(password_from, f"{where}: password", env, read_secret)
        out[region] = Connection(
            kind=ds.kind,
            host=body.host,
            port=body.port or ds.default_port,
            user=user,
            password=password,
            database=body.database or ds.database,
            table=ds.table,
        )
    return out
