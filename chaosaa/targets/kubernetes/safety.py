"""The blast radius, checked before anything is touched (``SafetyError``, exit 2).

Every context of the GameDay must be allow-listed (``--allow-context`` /
``CHAOSAA_ALLOWED_CONTEXTS``); no targeted namespace, and no node a fault touches, may be
labelled ``chaosaa.io/protected=true``. A namespace that does not exist is invalid input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable

from chaosaa.errors import InvalidInputError, SafetyError, TargetUnreachableError
from chaosaa.kube import ApiError, NotFoundError, meta
from chaosaa.targets.kubernetes.regions import Region, Regions

LABEL_PROTECTED = "chaosaa.io/protected"


def check_allowlist(contexts: Iterable[str], allowed: Collection[str]) -> None:
    refused = sorted(set(contexts) - set(allowed))
    if refused:
        raise SafetyError(
            f"context(s) {', '.join(refused)} not allowed: chaosaa touches only "
            "allow-listed contexts; add --allow-context "
            + " --allow-context ".join(refused)
            + " (or CHAOSAA_ALLOWED_CONTEXTS) if you mean it"
        )


def _protected(obj: dict[str, object]) -> bool:
    labels = meta(obj).get("labels") or {}
    return bool(labels.get(LABEL_PROTECTED) == "true")


async def check_blast_radius(regions: Regions, touched: Collection[str]) -> None:
    """Refuse protected namespaces, and protected nodes of the ``touched`` regions.

    Loads every region's nodes on the way: their addresses place node rules, and the
    preflight sweep of expired leftovers covers them.
    """
    problems: list[str] = []
    missing: list[str] = []

    async def check_namespace(region: Region, ns: str) -> None:
        try:
            obj = await region.kube.call(region.kube.core.read_namespace, ns)
        except NotFoundError:
            missing.append(f"namespace {ns} does not exist in context {region.context}")
            return
        except ApiError as exc:
            raise TargetUnreachableError(f"context {region.context}: {exc}") from exc
        if _protected(obj):
            problems.append(
                f"namespace {ns} in context {region.context} is labelled {LABEL_PROTECTED}=true"
            )

    await asyncio.gather(*(check_namespace(r, ns) for r in regions for ns in r.namespaces))
    await asyncio.gather(*(r.load_nodes() for r in regions))
    for region in regions:
        if region.name not in touched:
            continue
        problems += [
            f"node {meta(node)['name']} of region {region.name} is labelled {LABEL_PROTECTED}=true"
            for node in region.nodes
            if _protected(node)
        ]
    if problems:
        raise SafetyError(
            "refusing to touch protected resources (nothing was changed): "
            + "; ".join(sorted(problems))
        )
    if missing:
        raise InvalidInputError("; ".join(sorted(missing)))
