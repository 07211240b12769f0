"""``spec.datastores``: datastore canaries in a GameDay (DESIGN.md section 8a).

One entry per replicated database: its kind, one endpoint per region, credentials *by
reference* (an environment variable, or a Kubernetes Secret for the operator) and the
canary cadence. A password written in the file is refused at validation::

    spec:
      datastores:
        - name: orders
          kind: postgres                 # postgres | mysql (MariaDB, Galera, MySQL)
          database: shop
          credentials:
            username: chaosaa_canary
            passwordFrom: {env: ORDERS_DB_PASSWORD}
            # or: passwordFrom: {secretKeyRef: {name: orders-db, key: password}}
          regions:
            us: {host: orders.us.internal, port: 5432}
            eu: {host: orders.eu.internal}
          interval: 200ms                # one canary per region every 200ms
          pollInterval: 50ms             # canary-lag resolution ~ pollInterval

A lab running a database system (``target.system``) supplies its datastore itself: its
canaries run without a ``datastores`` section.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from chaosaa.spec.types import NAME_PATTERN, Duration, Model, RegionName

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_INLINE_SECRET = (
    "a password must not be written in the GameDay file: use passwordFrom: {env: NAME} or "
    "passwordFrom: {secretKeyRef: {name: SECRET, key: KEY}}"
)


class SecretKeyRef(Model):
    """A key of a Kubernetes Secret (operator; the CLI reads it through the kubeconfig)."""

    name: str = Field(min_length=1, description="Secret name")
    key: str = Field(min_length=1, description="key in the Secret's data")
    namespace: str | None = Field(None, description="default: the GameDay's namespace")


class ValueFrom(Model):
    """Where a credential comes from: exactly one of ``env`` or ``secretKeyRef``."""

    env: str | None = Field(None, pattern=ENV_NAME_PATTERN, description="environment variable")
    secret_key_ref: SecretKeyRef | None = Field(None, description="Kubernetes Secret key")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.env is None) == (self.secret_key_ref is None):
            raise ValueError("give exactly one of env or secretKeyRef")
        return self


class Credentials(Model):
    username: str | None = Field(None, min_length=1, description="user name (not a secret)")
    username_from: ValueFrom | None = Field(None, description="user name from env or a Secret")
    password_from: ValueFrom | None = Field(
        None, description="password from env or a Secret (never inline)"
    )
    password: str | None = Field(None, description="refused: never write a password here")

    @field_validator("password", mode="before")
    @classmethod
    def _no_inline_password(cls, value: object) -> object:
        if value is not None:
            raise ValueError(_INLINE_SECRET)
        return value

    @model_validator(mode="after")
    def _one_username(self) -> Self:
        if self.username is not None and self.username_from is not None:
            raise ValueError("give at most one of username or usernameFrom")
        return self


class DatastoreRegion(Model):
    host: str = Field(min_length=1, description="host name or address of this region's server")
    port: int | None = Field(None, ge=1, le=65535, description="default 5432 / 3306 by kind")
    database: str | None = Field(None, min_length=1, description="overrides the datastore's")
    credentials: Credentials | None = Field(None, description="overrides the datastore's")


class Datastore(Model):
    """A replicated database that chaosaa watches with canary rows of its own."""

    name: str = Field(pattern=NAME_PATTERN, description="unique among the datastores")
    kind: Literal["postgres", "mysql"] = Field(description="postgres, or mysql (MySQL/MariaDB)")
    database: str = Field(min_length=1, description="database holding the canary table")
    table: str = Field(
        "chaosaa_canary",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="chaosaa's own table (created if absent; must be replicated)",
    )
    credentials: Credentials = Field(description="how to log in (password by reference only)")
    regions: dict[RegionName, DatastoreRegion] = Field(
        min_length=2, max_length=16, description="one endpoint per region (2 to 16)"
    )
    interval: Duration = Field(0.2, gt=0, description="one canary per region this often")
    poll_interval: Duration = Field(
        0.05, gt=0, description="how often every other region is asked: the lag's resolution"
    )
    convergence_timeout: Duration | None = Field(
        None, gt=0, description="default: spec.recovery.convergenceTimeout"
    )

    @model_validator(mode="after")
    def _password_somewhere(self) -> Self:
        for region, body in self.regions.items():
            creds = body.credentials or self.credentials
            if creds.password_from is None and self.credentials.password_from is None:
                raise ValueError(f"regions.{region}: no passwordFrom (env or secretKeyRef)")
        return self

    @property
    def default_port(self) -> int:
        return 5432 if self.kind == "postgres" else 3306
