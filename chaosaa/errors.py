"""One exception root; each subclass maps to exactly one exit code of ``chaosaa run``.

The CLI turns these into exit codes, the operator into kopf Permanent/Temporary errors.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of ``chaosaa run`` (DESIGN.md section 3)."""

    PASSED = 0
    SLO_FAILED = 1
    INVALID = 2
    ABORTED = 3
    ENVIRONMENT = 4


class ChaosaaError(Exception):
    """Root of every error chaosaa raises on purpose."""

    exit_code: ExitCode = ExitCode.ENVIRONMENT
    #: permanent errors are not retried by the operator
    permanent: bool = False


class InvalidInputError(ChaosaaError):
    """The user's input (a GameDay file, a flag, a PromQL expression) is wrong."""

    exit_code = ExitCode.INVALID
    permanent = True


class SpecError(InvalidInputError):
    """A GameDay file failed validation; carries every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class SafetyError(InvalidInputError):
    """The run would touch something outside its blast radius (protected namespace,
    context not allow-listed). Refused before anything is touched."""


class EnvironmentError_(ChaosaaError):
    """The world is not as the run needs it: target or Prometheus unreachable,
    a fault could not be applied or reverted."""

    exit_code = ExitCode.ENVIRONMENT


class TargetUnreachableError(EnvironmentError_):
    """The target (lab, cluster, node) did not answer."""


class PrometheusError(EnvironmentError_):
    """Prometheus could not be reached or returned an error for a valid query."""


class PromQLError(InvalidInputError):
    """Prometheus rejected a PromQL expression (a parse error): invalid input."""


class FaultError(EnvironmentError_):
    """A fault could not be injected, verified or reverted."""


class LeaseHeldError(EnvironmentError_):
    """Another run holds the target's lease."""


class AbortedError(ChaosaaError):
    """Steady state not met before injection, or an abort rule fired."""

    exit_code = ExitCode.ABORTED
