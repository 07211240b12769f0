"""How the engine tells the outside world what it is doing, without printing.

The CLI renders these calls with rich (live on a TTY, plain lines otherwise); the operator
turns them into Kubernetes Events; tests collect them.
"""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    def phase(self, name: str, detail: str = "") -> None:
        """A lifecycle phase begins (preflight, steady-state, inject, ...)."""

    def event(self, at: float, event: str, detail: dict[str, Any]) -> None:
        """Something worth a line happened (fault effective, abort fired, ...)."""

    def traffic(self, sent: int, ok: int, errors: int, by_region: dict[str, int]) -> None:
        """Periodic traffic counters while traffic runs."""


class NullProgress:
    """Progress that goes nowhere (library use, tests)."""

    def phase(self, name: str, detail: str = "") -> None:
        pass

    def event(self, at: float, event: str, detail: dict[str, Any]) -> None:
        pass

    def traffic(self, sent: int, ok: int, errors: int, by_region: dict[str, int]) -> None:
        pass
