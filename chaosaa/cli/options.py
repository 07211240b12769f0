"""The options of every command that reaches a target: ``run``, ``rollback``, ``operator``.

Defined once, so that a flag means the same everywhere. The command receives them as one
:class:`~chaosaa.targets.base.TargetOptions`, ``target``, that it completes with its run id.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from chaosaa.targets.base import TargetOptions

F = TypeVar("F", bound=Callable[..., Any])


def contexts(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--allow-context`` values; CHAOSAA_ALLOWED_CONTEXTS holds several, space separated."""
    return tuple(c for item in values for c in item.split())


def target_options(*, ephemeral_lab: bool | None = None) -> Callable[[F], F]:
    """Add ``--allow-context``, ``--kubeconfig``, ``--lab-state`` and, unless
    ``ephemeral_lab`` is None (never a temporary lab), the flag that turns its default
    (``ephemeral_lab``) around: ``--no-ephemeral-lab`` or ``--ephemeral-lab``."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def with_target(
            *args: Any,
            allow_contexts: tuple[str, ...],
            kubeconfig: str | None,
            lab_state: str | None,
            **kwargs: Any,
        ) -> Any:
            from chaosaa.targets.base import TargetOptions

            if ephemeral_lab is True:
                ephemeral = not kwargs.pop("no_ephemeral_lab")
            elif ephemeral_lab is False:
                ephemeral = bool(kwargs.pop("ephemeral_lab"))
            else:
                ephemeral = False
            target: TargetOptions = TargetOptions(
                allowed_contexts=contexts(allow_contexts),
                kubeconfig=kubeconfig,
                state_dir=lab_state,
                ephemeral=ephemeral,
            )
            return command(*args, target=target, **kwargs)

        decorated: Any = with_target
        if ephemeral_lab is True:
            decorated = click.option(
                "--no-ephemeral-lab",
                is_flag=True,
                help="lab targets: fail instead of starting a temporary lab when none is running.",
            )(decorated)
        elif ephemeral_lab is False:
            decorated = click.option(
                "--ephemeral-lab",
                is_flag=True,
                help="lab targets: start a temporary lab when none runs (off by default).",
            )(decorated)
        for option in reversed(_OPTIONS):
            decorated = option(decorated)
        result: F = decorated
        return result

    return decorate


_OPTIONS = (
    click.option(
        "--allow-context",
        "allow_contexts",
        multiple=True,
        envvar="CHAOSAA_ALLOWED_CONTEXTS",
        metavar="CONTEXT",
        help="kubernetes targets: a kube context runs may touch (repeatable; env "
        "CHAOSAA_ALLOWED_CONTEXTS, space separated).",
    ),
    click.option(
        "--kubeconfig",
        envvar="KUBECONFIG",
        default=None,
        help="kubeconfig file [default: $KUBECONFIG]; the operator's own credentials too "
        "(in a pod: its ServiceAccount).",
    ),
    click.option(
        "--lab-state",
        envvar="CHAOSAA_LAB_STATE",
        default=None,
        help="lab targets: state dir of a running lab [default: ~/.chaosaa/lab].",
    ),
)
