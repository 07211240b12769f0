"""Dataclasses <-> JSON-ready dicts, driven by the dataclass fields and their type hints.

Field names become camelCase. Fields marked with :func:`instant` hold unix seconds in
Python and ISO-8601 UTC strings in JSON. Non-finite floats (NaN, inf) are written as
``null``: JSON has no NaN and a report must always be writable. Unknown keys are ignored
(newer writers may add fields within a schema version); missing keys take the field's
default, or are an error naming the path when the field has none.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union

from pydantic.alias_generators import to_camel

from chaosaa.report.fmt import format_instant, parse_instant

T = TypeVar("T")

_INSTANT = "chaosaa.instant"


class DecodeError(ValueError):
    """A report document does not have the expected shape; ``path`` says where."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


def instant(**kwargs: Any) -> Any:
    """A dataclass field holding unix seconds, written as ISO-8601 UTC with milliseconds."""
    return dataclasses.field(metadata={_INSTANT: True}, **kwargs)


def json_name(field_name: str) -> str:
    return to_camel(field_name)


# --------------------------------------------------------------------------- encode


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass instance as a JSON-ready dict (camelCase keys, ISO instants)."""
    hints = _hints(type(obj))
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get(_INSTANT):
            out[json_name(f.name)] = _encode_instant(value)
        else:
            out[json_name(f.name)] = _encode(value, hints[f.name])
    return out


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _encode(value: Any, hint: Any) -> Any:
    """Encode by the declared type, so an int given for a float field is written as the
    float it will be read back as (the JSON round-trips exactly)."""
    if value is None or hint is Any:
        return plain(value)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if _is_union(hint):
        options = [a for a in args if a is not type(None)]
        return _encode(value, options[0]) if len(options) == 1 else plain(value)
    if origin is list and isinstance(value, list | tuple):
        return [_encode(v, args[0]) for v in value]
    if origin is tuple and isinstance(value, list | tuple):
        return [_encode(v, a) for v, a in zip(value, args, strict=False)]
    if origin is dict and isinstance(value, dict):
        return {str(k): _encode(v, args[1]) for k, v in value.items()}
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return plain(float(value))
    return plain(value)


def _encode_instant(value: float | None) -> str | None:
    if value is None or not math.isfinite(value):
        return None
    return format_instant(value)


def plain(value: Any) -> Any:
    """Any value as JSON-ready data; free-form ``details`` may hold anything."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return int(value)  # IntEnum -> plain int
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return str(value)


# --------------------------------------------------------------------------- decode


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from a JSON-ready dict; raise :class:`DecodeError`."""
    if not isinstance(data, dict):
        raise DecodeError(path, f"must be an object, not {_kind(data)}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = json_name(f.name)
        where = f"{path}.{key}" if path else key
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DecodeError(where, "missing")
            continue
        if f.metadata.get(_INSTANT):
            kwargs[f.name] = _decode_instant(data[key], hints[f.name], where)
        else:
            kwargs[f.name] = _decode(data[key], hints[f.name], where)
    return cls(**kwargs)


def _decode_instant(value: Any, hint: Any, path: str) -> float | None:
    if value is None:
        if _allows_none(hint):
            return None
        raise DecodeError(path, "must be an ISO-8601 instant, not null")
    if not isinstance(value, str):
        raise DecodeError(path, f"must be an ISO-8601 instant string, not {_kind(value)}")
    try:
        return parse_instant(value)
    except ValueError as e:
        raise DecodeError(path, str(e)) from None


def _allows_none(hint: Any) -> bool:
    return _is_union(hint) and type(None) in typing.get_args(hint)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _decode(value: Any, hint: Any, path: str) -> Any:
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if _is_union(hint):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"unsupported union {hint!r} in the report model")
        return _decode(value, options[0], path)
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise DecodeError(path, f"{value!r} is not one of {allowed}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise DecodeError(path, f"must be a list, not {_kind(value)}")
        return [_decode(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list) or len(value) != len(args):
            raise DecodeError(path, f"must be a list of {len(args)} items")
        return tuple(
            _decode(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise DecodeError(path, f"must be an object, not {_kind(value)}")
        return {k: _decode(v, args[1], f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)  # type: ignore[arg-type]
    return _decode_scalar(value, hint, path)


def _decode_scalar(value: Any, hint: Any, path: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise DecodeError(path, f"must be true or false, not {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DecodeError(path, f"must be an integer, not {_kind(value)}")
        return value
    if hint is float:
        if value is None:
            return math.nan  # written for a NaN; see module docstring
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DecodeError(path, f"must be a number, not {_kind(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise DecodeError(path, f"must be a string, not {_kind(value)}")
        return value
    raise TypeError(f"unsupported type {hint!r} in the report model")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
