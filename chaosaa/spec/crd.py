"""The custom resources of the operator, rendered from the pydantic models.

``GameDay``'s spec *is* :class:`chaosaa.spec.model.GameDaySpec`; ``GameDayRun`` and both
statuses are :mod:`chaosaa.spec.status`. ``chaosaa crd render`` turns them into
CustomResourceDefinitions whose ``openAPIV3Schema`` is *structural*, which a JSON Schema
from pydantic is not:

- ``$ref`` is resolved inline; ``anyOf [X, null]`` becomes ``X`` with ``nullable: true``;
  an ``anyOf`` of string alternatives (``auto`` or a duration) becomes one pattern;
- a discriminated union (faults, SLOs) becomes one object: the union of the variants'
  properties, ``type`` as an enum, and CEL rules (``x-kubernetes-validations``, checked
  at admission) for what the variant decides: its required fields, the fields that do not
  apply to it, and the type of a field whose type differs between variants (SLO ``max`` is
  a duration for ``failoverTime`` and a number for ``errorRate``), which is the only place
  where ``x-kubernetes-preserve-unknown-fields`` is used;
- ``additionalProperties: false`` is not allowed: unknown fields are pruned by the
  apiserver (and ``kubectl`` warns about them). What a schema cannot express (a region
  that is not in ``target.regions``, "exactly one of regions or links") the operator
  checks with the same models and marks the GameDay ``Valid=False`` with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from chaosaa.spec.model import GameDaySpec
from chaosaa.spec.status import GameDayRunSpec, GameDayRunStatus, GameDayStatus
from chaosaa.spec.types import NAME_PATTERN

GROUP = "chaosaa.io"
VERSION = "v1alpha1"

# --------------------------------------------------------------------------- rendering

#: keywords kept from JSON Schema; everything else (title, default, discriminator, ...) goes
_KEEP = {
    "type",
    "format",
    "description",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "nullable",
}

#: defaults the apiserver fills in, so that ``kubectl get`` shows them (operator fields only;
#: the engine's defaults stay in the models, where one change updates CLI and operator alike)
_SPEC_DEFAULTS = {
    "suspend": False,
    "concurrencyPolicy": "Forbid",
    "timeZone": "UTC",
    "successfulRunsHistoryLimit": 3,
    "failedRunsHistoryLimit": 1,
}


class _Converter:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self.defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def convert(self, node: dict[str, Any]) -> dict[str, Any]:
        node = self.resolve(node)
        if "oneOf" in node and "discriminator" in node:
            out = self.flatten([self.resolve(v) for v in node["oneOf"]], node["discriminator"])
        elif "anyOf" in node:
            out = self.any_of(node["anyOf"])
        else:
            out = self.plain(node)
        if "description" in node and "description" not in out:
            out["description"] = node["description"]
        return out

    def plain(self, node: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in node.items() if k in _KEEP}
        if "const" in node:
            out["enum"] = [node["const"]]
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema 2020 gives the bound; OpenAPI v3.0 a flag next to minimum/maximum
            if bound in node and not isinstance(node[bound], bool):
                out[bound.replace("exclusiveM", "m")] = node[bound]
                out[bound] = True
        if "properties" in node:
            out["type"] = "object"
            out["properties"] = {k: self.convert(v) for k, v in node["properties"].items()}
        if "items" in node:
            out["items"] = self.convert(node["items"])
        if "patternProperties" in node:
            ((pattern, value),) = node["patternProperties"].items()
            out["additionalProperties"] = self.convert(value)
            out["x-kubernetes-validations"] = [
                {
                    "rule": f"self.all(k, k.matches({_cel_string(pattern)}))",
                    "message": f"keys must match {pattern}",
                }
            ]
        elif isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = self.convert(node["additionalProperties"])
        elif node.get("additionalProperties") is True:
            out["x-kubernetes-preserve-unknown-fields"] = True  # a free-form object
        return out

    def any_of(self, options: list[dict[str, Any]]) -> dict[str, Any]:
        nullable = any(o.get("type") == "null" for o in options)
        rest = [self.convert(o) for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            out = rest[0]
        elif all(o.get("type") == "string" for o in rest):
            # e.g. `auto` or a duration: one pattern with both alternatives
            alternatives = []
            for o in rest:
                if "enum" in o:
                    alternatives += [f"^{v}$" for v in o["enum"]]
                else:
                    alternatives.append(o.get("pattern", "^.*$"))
            out = {"type": "string", "pattern": "|".join(f"(?:{a})" for a in alternatives)}
        else:
            raise ValueError(f"cannot express anyOf {options} in a structural schema")
        if nullable:
            out["nullable"] = True
        return out

    def flatten(
        self, variants: list[dict[str, Any]], discriminator: dict[str, Any]
    ) -> dict[str, Any]:
        tag = discriminator["propertyName"]
        tags = [v["properties"][tag]["const"] for v in variants]
        converted = [
            {k: self.convert(s) for k, s in v["properties"].items() if k != tag} for v in variants
        ]
        names = list(dict.fromkeys(k for props in converted for k in props))
        required_everywhere = set.intersection(*(set(v.get("required", [])) for v in variants))
        properties: dict[str, Any] = {
            tag: {"type": "string", "enum": tags, "description": f"one of {', '.join(tags)}"}
        }
        rules: list[dict[str, str]] = []
        for name in names:
            present = [
                (t, props[name]) for t, props in zip(tags, converted, strict=True) if name in props
            ]
            properties[name] = self.merge_property(name, present, rules)
        # CEL cannot see a field without a type, not even with has(): such a field's
        # presence is checked by the operator
        invisible = {n for n, p in properties.items() if "type" not in p}
        for t, variant, props in zip(tags, variants, converted, strict=True):
            guard = f"self.{tag} != {_cel_string(t)}"
            required = [r for r in variant.get("required", []) if r not in required_everywhere]
            required = [r for r in required if r != tag and r not in invisible]
            if required:
                rules.append(
                    {
                        "rule": f"{guard} || ({' && '.join(f'has(self.{r})' for r in required)})",
                        "message": f"type {t} requires {', '.join(required)}",
                    }
                )
            foreign = [n for n in names if n not in props and n not in invisible]
            if foreign:
                rules.append(
                    {
                        "rule": f"{guard} || !({' || '.join(f'has(self.{n})' for n in foreign)})",
                        "message": f"type {t} takes none of: {', '.join(foreign)}",
                    }
                )
        return {
            "type": "object",
            "required": sorted(required_everywhere | {tag}, key=lambda r: (r != tag, r)),
            "properties": properties,
            "x-kubernetes-validations": rules,
        }

    def merge_property(
        self, name: str, present: list[tuple[str, dict[str, Any]]], rules: list[dict[str, str]]
    ) -> dict[str, Any]:
        def shape(s: dict[str, Any]) -> str:
            return json.dumps(
                {k: v for k, v in s.items() if k not in ("description", "nullable")}, sort_keys=True
            )

        descriptions = list(
            dict.fromkeys(s["description"] for _, s in present if "description" in s)
        )
        description = (
            descriptions[0]
            if len(descriptions) == 1
            else "; ".join(f"{t}: {s['description']}" for t, s in present if "description" in s)
        )
        shapes = [
            {k: v for k, v in s.items() if k not in ("description", "nullable")} for _, s in present
        ]
        nullable = any(s.get("nullable") for _, s in present)
        if len({shape(s) for _, s in present}) == 1:
            out = dict(shapes[0])
        elif len({s.get("type") for s in shapes}) == 1 and "type" in shapes[0]:
            # same type, different constraints (a required promql is non-empty): keep what
            # every variant agrees on, check the rest per variant
            out = {k: v for k, v in shapes[0].items() if all(k in o and o[k] == v for o in shapes)}
            for (t, s), own in zip(present, shapes, strict=True):
                extra = {k: v for k, v in own.items() if k not in out}
                if extra:
                    rules.append(
                        {
                            "rule": f"self.type != {_cel_string(t)} || !has(self.{name}) || "
                            f"({_cel_constraints(f'self.{name}', extra, s)})",
                            "message": f"{name}: {_describe(s)} for type {t}",
                        }
                    )
        else:
            # The type depends on the variant (SLO max: a duration or a number). CEL cannot
            # see a field without a type, so admission accepts any value here and the
            # operator's validation (the same models) names the problem.
            out = {"x-kubernetes-preserve-unknown-fields": True}
        if nullable and "type" in out:
            out["nullable"] = True
        if description:
            out["description"] = description
        return out


def _cel_string(text: str) -> str:
    if "'" in text or "\n" in text:
        raise ValueError(f"cannot quote {text!r} for CEL")
    return f"r'{text}'" if "\\" in text else f"'{text}'"


def _cel_constraints(expr: str, constraints: dict[str, Any], s: dict[str, Any]) -> str:
    """CEL for JSON Schema constraints of a value whose type is already known."""
    checks: list[str] = []
    number = f"double({expr})"
    for key, value in constraints.items():
        if key == "pattern":
            checks.append(f"{expr}.matches({_cel_string(value)})")
        elif key == "enum":
            checks.append(f"{expr} in [{', '.join(_cel_string(v) for v in value)}]")
        elif key in ("minLength", "minItems"):
            checks.append(f"size({expr}) >= {value}")
        elif key in ("maxLength", "maxItems"):
            checks.append(f"size({expr}) <= {value}")
        elif key == "minimum":
            checks.append(f"{number} {'>' if s.get('exclusiveMinimum') else '>='} {float(value)!r}")
        elif key == "maximum":
            checks.append(f"{number} {'<' if s.get('exclusiveMaximum') else '<='} {float(value)!r}")
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            continue  # folded into minimum/maximum
        else:
            raise ValueError(f"no CEL for {key} in {s}")
    # a nullable field set to null is absent to CEL: the caller's `!has(...)` covers it
    return " && ".join(checks) or "true"


def _describe(s: dict[str, Any]) -> str:
    kind = s.get("type")
    if "enum" in s:
        *first, last = s["enum"]
        return f"must be {', '.join(first)} or {last}" if first else f"must be {last}"
    if kind == "string" and "ms|s|m|h|d" in s.get("pattern", ""):
        return "must be a duration such as 30s"
    if kind == "integer":
        return "must be an integer" + (f" >= {s['minimum']}" if "minimum" in s else "")
    if kind == "number":
        bounds = []
        if "minimum" in s:
            bounds.append(f"{'>' if s.get('exclusiveMinimum') else '>='} {s['minimum']}")
        if "maximum" in s:
            bounds.append(f"{'<' if s.get('exclusiveMaximum') else '<='} {s['maximum']}")
        return "must be a number" + (f" {' and '.join(bounds)}" if bounds else "")
    if kind == "string" and s.get("minLength") == 1:
        return "must not be empty"
    return f"must be a {kind}"


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The structural openAPIV3Schema of one model (camelCase field names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _Converter(raw.get("$defs", {})).convert(raw)


def _spec_schema() -> dict[str, Any]:
    spec = schema_of(GameDaySpec)
    for name, default in _SPEC_DEFAULTS.items():
        spec["properties"][name]["default"] = default
    return spec


def _root(spec: dict[str, Any], status: dict[str, Any], kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.matches({_cel_string(NAME_PATTERN)})",
                "message": f"a {kind} name is a DNS label of at most 63 characters "
                "(it labels the runs)",
            }
        ],
    }


def _status_schema(model: type[BaseModel]) -> dict[str, Any]:
    status = schema_of(model)
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    conditions["items"]["required"] = ["type", "status"]
    return status


def _crd(
    kind: str,
    plural: str,
    short_names: list[str],
    schema: dict[str, Any],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "chaosaa"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["chaosaa"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def _column(name: str, kind: str, path: str, description: str = "") -> dict[str, Any]:
    out = {"name": name, "type": kind, "jsonPath": path}
    if description:
        out["description"] = description
    return out


AGE = _column("Age", "date", ".metadata.creationTimestamp")


def gameday_crd() -> dict[str, Any]:
    schema = _root(_spec_schema(), _status_schema(GameDayStatus), "GameDay")
    schema["description"] = (
        "A GameDay: target, traffic, steady state, faults, SLOs and abort rules, "
        "run on a cron schedule by the chaosaa operator."
    )
    columns = [
        _column("Schedule", "string", ".spec.schedule"),
        _column("Suspend", "boolean", ".spec.suspend"),
        _column("Last Verdict", "string", ".status.lastRun.verdict"),
        _column("Last Failover", "number", ".status.lastRun.failoverSeconds", "seconds"),
        # a string: kubectl prints dates in the future as <invalid>
        _column("Next Run", "string", ".status.nextScheduleTime"),
        AGE,
    ]
    return _crd("GameDay", "gamedays", ["gd"], schema, columns)


def gamedayrun_crd() -> dict[str, Any]:
    spec = schema_of(GameDayRunSpec)
    spec["x-kubernetes-validations"] = [{"rule": "self == oldSelf", "message": "spec is immutable"}]
    schema = _root(spec, _status_schema(GameDayRunStatus), "GameDayRun")
    schema["description"] = "One run of a GameDay, created by the operator or by hand."
    columns = [
        _column("GameDay", "string", ".spec.gameDay"),
        _column("Phase", "string", ".status.phase"),
        _column("Verdict", "string", ".status.verdict"),
        _column("Failover", "number", ".status.failoverSeconds", "seconds"),
        _column("Started", "date", ".status.startedAt"),
        AGE,
    ]
    return _crd("GameDayRun", "gamedayruns", ["gdr"], schema, columns)


def render_crds() -> list[dict[str, Any]]:
    """The operator's CRDs, in the order they are installed."""
    return [gameday_crd(), gamedayrun_crd()]


def file_name(crd: dict[str, Any]) -> str:
    """``gamedays.chaosaa.io.yaml``: how a CRD is named in ``charts/chaosaa/crds/``."""
    return f"{crd['metadata']['name']}.yaml"


HEADER = "# Generated by `chaosaa crd render` from the pydantic models; do not edit.\n"


def to_yaml(docs: Iterable[dict[str, Any]]) -> str:
    import yaml

    return "---\n".join(
        HEADER + yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True) for doc in docs
    )
