"""Handler logic, one module per resource; ``chaosaa.operator.main`` registers it with kopf."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import kopf

from chaosaa.errors import ChaosaaError

#: seconds before kopf retries a handler that failed for a temporary reason
RETRY_DELAY = 5.0


@contextlib.contextmanager
def kopf_errors() -> Iterator[None]:
    """ChaosaaError -> kopf's PermanentError (not retried) or TemporaryError (retried)."""
    try:
        yield
    except ChaosaaError as exc:
        if exc.permanent:
            raise kopf.PermanentError(str(exc)) from exc
        raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY) from exc
