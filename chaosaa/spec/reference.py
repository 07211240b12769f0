"""Render the GameDay field reference (docs/gameday-reference.md) from the models.

The models are the single source: a test re-renders this and diffs it with the file.
"""

from __future__ import annotations

from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from chaosaa.durations import format_duration
from chaosaa.spec import datastores as d
from chaosaa.spec import model as m
from chaosaa.spec import traffic as t
from chaosaa.spec.faults import FAULT_MODELS, FAULT_TYPES

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("GameDay", m.GameDay),
    ("metadata", m.Metadata),
    ("spec", m.GameDaySpec),
    ("spec.target", m.Target),
    ("spec.target.regions.NAME", m.RegionTarget),
    ("spec.target.lab", m.LabSettings),
    ("lab capacity", m.LabCapacity),
    ("spec.prometheus", m.Prometheus),
    ("spec.traffic", t.Traffic),
    ("spec.traffic.load.NAME", t.RegionLoad),
    ("stage `constant`", t.ConstantStage),
    ("stage `ramp`", t.RampStage),
    ("stage `step`", t.StepStage),
    ("probe `kv`", t.KvProbe),
    ("probe `http`", t.HttpProbe),
    ("spec.recovery", m.Recovery),
    ("spec.steadyState[]", m.SteadyStateCheck),
    ("spec.abort[]", m.AbortRule),
    ("spec.datastores[]", d.Datastore),
    ("spec.datastores[].credentials", d.Credentials),
    ("spec.datastores[].regions.NAME", d.DatastoreRegion),
    ("credentials.passwordFrom, credentials.usernameFrom", d.ValueFrom),
    ("passwordFrom.secretKeyRef", d.SecretKeyRef),
    *((f"fault `{name}`", model) for name, model in zip(FAULT_TYPES, FAULT_MODELS, strict=True)),
    ("SLO `failoverTime`", m.FailoverTimeSLO),
    ("SLO `replicationLag`", m.ReplicationLagSLO),
    ("SLO `lostWrites`", m.LostWritesSLO),
    ("SLO `errorRate`", m.ErrorRateSLO),
    ("SLO `latency`", m.LatencySLO),
    ("SLO `promql`", m.PromQLSLO),
]


def _type_name(annotation: Any) -> str:
    meta = getattr(annotation, "__metadata__", ())
    for item in meta:
        schema = getattr(item, "json_schema", None)
        if isinstance(schema, dict) and "pattern" in schema:
            pattern = schema["pattern"]
            if "ms|s|m|h" in pattern:
                return "duration"
            if "kbit" in pattern:
                return "rate"
            if ">=" in pattern:
                return "expectation"
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is None:
        if isinstance(annotation, type):
            if issubclass(annotation, BaseModel):
                return "object"
            return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
                annotation.__name__, annotation.__name__
            )
        return str(annotation)
    if str(origin).endswith("Literal"):
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map of {_type_name(args[1])}"
    if args and meta:
        return _type_name(args[0])
    names = [_type_name(a) for a in args if a is not type(None)]
    return " or ".join(dict.fromkeys(names))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        return ""
    value = info.default
    if value is None or value is PydanticUndefined:
        return ""
    if isinstance(value, float) and _type_name(info.rebuild_annotation()).startswith("duration"):
        return f"`{format_duration(value)}`"
    return f"`{value}`"


def render_reference() -> str:
    out = [
        "# GameDay reference",
        "",
        "Generated from the pydantic models by `python -m chaosaa.spec.reference`; do not edit.",
        "Durations: `250ms`, `10s`, `5m`, `1h` (at most `24h`). "
        "Rates: `64kbit`, `1mbit` (`kbps` = bytes).",
        'Expectations: a comparison and a number in quotes, e.g. `">= 0.99"`.',
        "",
    ]
    for title, model in SECTIONS:
        doc = (model.__doc__ or "").strip().splitlines()
        out += [f"## {title}", ""]
        if doc and not doc[0].startswith(("Strict base", "Faults that take")):
            out += [doc[0], ""]
        out += ["| field | type | default | meaning |", "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            alias = info.alias or name
            if alias == "type" and len(get_args(info.annotation)) == 1:
                continue
            desc = (info.description or "").replace("|", "\\|")
            kind = _type_name(info.rebuild_annotation())
            out.append(f"| `{alias}` | {kind} | {_default(info)} | {desc} |")
        out.append("")
        example = getattr(model, "EXAMPLE", None)
        if isinstance(example, str):
            out += ["Example:", "", "```yaml", example.strip("\n"), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(render_reference(), end="")
