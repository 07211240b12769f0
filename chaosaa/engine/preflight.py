"""Preflight checks a run makes before it touches anything (DESIGN.md section 4).

The target, Prometheus, the PromQL expressions and the lease are checked by the run's
``preflight`` phase (:mod:`chaosaa.engine.run`); what the run's caller provides is
checked here, first: a report directory that cannot take the report would otherwise be
found only after the whole GameDay ran, with its verdict lost.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from chaosaa.errors import ChaosaaError, EnvironmentError_, InvalidInputError

#: the machine ran out of something: not the user's choice of directory
_RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EMFILE})


def check_report_dir(directory: Path) -> None:
    """Create ``directory`` if needed and write and delete a probe file in it.

    Raises ``InvalidInputError`` (exit 2) when the path cannot hold files (not a
    directory, no permission, read-only) and ``EnvironmentError_`` (exit 4) when the
    machine is out of space or similar. Directories this check created are removed
    again when it fails: nothing is left behind.
    """
    missing = [p for p in (directory, *directory.parents) if not os.path.lexists(p)]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".chaosaa-probe-", dir=directory)
        try:
            os.write(fd, b"chaosaa checks that the report directory takes files\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        for created in missing:  # deepest first
            with contextlib.suppress(OSError):
                created.rmdir()
        raise report_dir_error(directory, exc) from None


def report_dir_error(directory: Path, exc: OSError) -> ChaosaaError:
    """The error for a report directory that failed with ``exc``, in one line."""
    reason = exc.strerror or str(exc)
    if exc.filename and str(exc.filename) != str(directory):
        reason += f": {exc.filename}"
    message = f"report directory {directory}: cannot write reports there ({reason})"
    if exc.errno in _RESOURCE_ERRNOS:
        return EnvironmentError_(message)
    return InvalidInputError(message)
