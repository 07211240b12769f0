"""Remote regions: kubeconfigs read from Secrets named in the GameDay, handed to the target.

``spec.target.regions.<r>.kubeconfigSecret: {name, key}`` names a Secret in the GameDay's
own namespace (never elsewhere: a GameDay author must not reach credentials of another
namespace through the operator). Each is read by name when a run starts, written to a
private temporary directory for the run's lifetime, and passed to the target as
``TargetOptions.kubeconfig`` (all regions merged, contexts as the Secrets name them) and
``TargetOptions.extra["kubeconfigs"]`` (one file per region).
"""

from __future__ import annotations

import asyncio
import copy
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from chaosaa.errors import InvalidInputError
from chaosaa.kube import ForbiddenError, NotFoundError
from chaosaa.operator.kube import Kube
from chaosaa.spec.model import GameDay
from chaosaa.targets.base import TargetOptions


@dataclass
class RunCredentials:
    """Files holding the kubeconfigs of one run; ``cleanup()`` removes them."""

    merged: str | None = None
    per_region: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None

    def target_options(
        self, base: TargetOptions, run_id: str, namespace: str, **extra: Any
    ) -> TargetOptions:
        """What one run's target gets: the operator's target flags (``base``, the same as
        ``chaosaa run``'s) with this run's id, namespace and credentials."""
        return replace(
            base,
            run_id=run_id,
            kubeconfig=self.merged or base.kubeconfig,
            extra={"kubeconfigs": dict(self.per_region), "namespace": namespace, **extra},
        )

    def cleanup(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


async def read_kubeconfigs(kube: Kube, namespace: str, gameday: GameDay) -> RunCredentials:
    refs = {
        region: target.kubeconfig_secret
        for region, target in gameday.spec.target.regions.items()
        if target.kubeconfig_secret is not None
    }
    if not refs:
        return RunCredentials()
    docs: dict[str, dict[str, Any]] = {}
    for region, ref in refs.items():
        where = f"Secret {namespace}/{ref.name}"
        try:
            data = await kube.secret_data(namespace, ref.name)
        except NotFoundError:
            raise InvalidInputError(
                f"spec.target.regions.{region}.kubeconfigSecret: {where} does not exist"
            ) from None
        except ForbiddenError:
            raise InvalidInputError(
                f"spec.target.regions.{region}.kubeconfigSecret: the operator may not read "
                f"{where} (its Role allows get on Secrets in its namespaces, by name)"
            ) from None
        if ref.key not in data:
            raise InvalidInputError(
                f"spec.target.regions.{region}.kubeconfigSecret: {where} has no key "
                f"{ref.key!r} (keys: {', '.join(sorted(data)) or 'none'})"
            )
        try:
            doc = yaml.safe_load(data[ref.key].decode())
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise InvalidInputError(f"{where}[{ref.key}] is not a kubeconfig: {exc}") from None
        if not isinstance(doc, dict) or not doc.get("contexts"):
            raise InvalidInputError(f"{where}[{ref.key}] is not a kubeconfig (no contexts)")
        docs[region] = doc
    return await asyncio.to_thread(_write, docs, gameday)


def merge(docs: dict[str, dict[str, Any]], gameday: GameDay) -> dict[str, Any]:
    """One kubeconfig with every region's context. Clusters and users are renamed
    ``<region>-<name>`` where two Secrets use one name for different things."""
    merged: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [],
    }
    taken: dict[str, dict[str, Any]] = {"clusters": {}, "users": {}, "contexts": {}}
    for region, original in docs.items():
        doc = copy.deepcopy(original)
        renames: dict[str, dict[str, str]] = {"clusters": {}, "users": {}}
        for section in ("clusters", "users"):
            for item in doc.get(section) or []:
                name = item["name"]
                if name in taken[section] and taken[section][name] != item:
                    renames[section][name] = f"{region}-{name}"
                    item = {**item, "name": f"{region}-{name}"}
                if item["name"] not in taken[section]:
                    taken[section][item["name"]] = item
                    merged[section].append(item)
        for ctx in doc.get("contexts") or []:
            body = dict(ctx.get("context") or {})
            body["cluster"] = renames["clusters"].get(body.get("cluster", ""), body.get("cluster"))
            body["user"] = renames["users"].get(body.get("user", ""), body.get("user"))
            item = {"name": ctx["name"], "context": body}
            if ctx["name"] in taken["contexts"]:
                if taken["contexts"][ctx["name"]] != item:
                    raise InvalidInputError(
                        f"kubeconfig Secrets define context {ctx['name']!r} differently "
                        f"(region {region}); give the regions distinct context names"
                    )
                continue
            taken["contexts"][ctx["name"]] = item
            merged["contexts"].append(item)
    first = next(iter(gameday.spec.target.regions.values()))
    if first.context:
        merged["current-context"] = first.context
    return merged


def _write(docs: dict[str, dict[str, Any]], gameday: GameDay) -> RunCredentials:
    directory = Path(tempfile.mkdtemp(prefix="chaosaa-kubeconfig-"))
    creds = RunCredentials(directory=directory)
    try:
        for region, doc in docs.items():
            path = directory / f"{region}.yaml"
            _private(path, yaml.safe_dump(doc))
            creds.per_region[region] = str(path)
        merged = directory / "merged.yaml"
        _private(merged, yaml.safe_dump(merge(docs, gameday)))
        creds.merged = str(merged)
    except BaseException:
        creds.cleanup()
        raise
    return creds


def _private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text)
