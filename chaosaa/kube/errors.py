"""The one error tree of every Kubernetes API call chaosaa makes.

::

    KubeError (EnvironmentError_)        a call failed; temporary unless a subclass says so
    ├── UnreachableError                 no answer: connection refused, timed out
    │                                    (also a TargetUnreachableError)
    └── ApiError                         the API server answered with an error status
        ├── NotFoundError                404
        ├── ForbiddenError               403 (permanent: retrying does not help)
        ├── ConflictError                409: the object changed since it was read
        │   └── AlreadyExistsError       409, reason AlreadyExists: a create found it there
        └── InvalidError                 422: rejected (e.g. a JSON patch's ``test`` failed)
"""

from __future__ import annotations

import json

from chaosaa.errors import EnvironmentError_, TargetUnreachableError


class KubeError(EnvironmentError_):
    """A Kubernetes API call failed."""

    def __init__(self, message: str, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        #: the HTTP status of the answer, None when there was none
        self.status = status
        #: the ``reason`` of the API's Status object (``AlreadyExists``, ``Conflict``, ...)
        self.reason = reason


class UnreachableError(KubeError, TargetUnreachableError):
    """The API server did not answer (connection refused, reset or timed out)."""


class ApiError(KubeError):
    """The API server answered with an error status."""


class NotFoundError(ApiError):
    pass


class ForbiddenError(ApiError):
    permanent = True


class ConflictError(ApiError):
    pass


class AlreadyExistsError(ConflictError):
    pass


class InvalidError(ApiError):
    pass


def api_error(status: int, body: str | bytes | None, fallback: str, what: str) -> ApiError:
    """The error for an error status: ``what`` failed, with the API's own message."""
    reason, message = "", fallback
    try:
        doc = json.loads(body or "{}")
        reason = str(doc.get("reason") or "")
        message = str(doc.get("message") or message)
    except (TypeError, ValueError, AttributeError):
        pass
    text = f"{what}: {message or f'HTTP {status}'}"
    cls: type[ApiError] = {
        404: NotFoundError,
        403: ForbiddenError,
        409: AlreadyExistsError if reason == "AlreadyExists" else ConflictError,
        422: InvalidError,
    }.get(status, ApiError)
    return cls(text, status, reason)
