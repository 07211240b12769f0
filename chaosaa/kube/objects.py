"""Reading and patching Kubernetes objects as the JSON the API returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object's ``metadata`` (empty when it has none)."""
    out: dict[str, Any] = obj.get("metadata") or {}
    return out


def selector(labels: Mapping[str, str]) -> str:
    """A label selector matching every one of ``labels``."""
    return ",".join(f"{k}={v}" for k, v in labels.items())


def workload_selector(spec_selector: Mapping[str, Any] | None) -> str | None:
    """A label selector string for a workload's ``spec.selector`` (None: selects nothing)."""
    if not spec_selector:
        return None
    parts = [f"{k}={v}" for k, v in (spec_selector.get("matchLabels") or {}).items()]
    for expr in spec_selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or None


def add_map_entries(
    path: str, current: Mapping[str, str] | None, entries: Mapping[str, str]
) -> list[dict[str, Any]]:
    """JSON-patch operations setting ``entries`` in the map at ``path`` (creating the map)."""
    if current is None:
        return [{"op": "add", "path": path, "value": dict(entries)}]
    return [{"op": "add", "path": f"{path}/{_escape(k)}", "value": v} for k, v in entries.items()]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def micro_time(ts: float) -> str:
    """Kubernetes MicroTime (a Lease's ``renewTime``): RFC 3339 with microseconds."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(value: Any) -> float | None:
    """Unix seconds of a Time or MicroTime; None when absent or not a time."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()
