"""Read GameDay files: strict YAML, line numbers, and errors that name file, field and reason.

Error lines look like ``region-down.yaml:23: spec.faults[0].duration: must be > 0``.

A chaos tool must not crash on what a careless or hostile user writes: before anything
is built from the YAML, the event stream is checked for nesting depth (the composer and
pydantic recurse), the node graph for mapping keys that are not scalars and for its size
with every alias expanded (a few aliases of aliases are a "billion laughs"), and the file
for its size. Any input gives a GameDay or a :class:`SpecError`, never a traceback.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from chaosaa.errors import SpecError
from chaosaa.spec.checks import semantic_problems
from chaosaa.spec.faults import FAULT_TYPES
from chaosaa.spec.model import SLO_TYPES, GameDay
from chaosaa.spec.traffic import PROBE_TYPES, STAGE_TYPES

Loc = tuple[str | int, ...]

#: a GameDay nests about 6 deep; the YAML composer and pydantic recurse per level
MAX_DEPTH = 64
#: nodes with every alias expanded; a GameDay has a few hundred
MAX_NODES = 100_000
#: a GameDay file is a few kilobytes
MAX_FILE_BYTES = 256 << 10
#: libyaml's parser and composer when PyYAML has them (about ten times faster), else
#: PyYAML's own; the constructors below are Python either way
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Discriminator values pydantic puts into error locations; users never wrote them.
_TAGS = {("faults", t) for t in FAULT_TYPES} | {("slos", t) for t in SLO_TYPES}
_TAGS |= {("stages", t) for t in STAGE_TYPES}
_FIELD_TAGS = {("probe", t) for t in PROBE_TYPES}  # a union in a field, not in a list


class _LineLoader(_BaseLoader):  # type: ignore[misc]
    """SafeLoader that rejects duplicate keys and remembers the line of every node."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[Loc, int] = {}


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"duplicate key {key!r} (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        try:
            seen[key] = key_node.start_mark.line
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"unhashable mapping key {key!r}", key_node.start_mark
            ) from None
    return loader.construct_mapping(node, deep=deep)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, from the parser's events (which do not
    recurse), before the composer builds nodes (which does)."""
    depth = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise SpecError(
                    [
                        f"{source}:{line}: nested more than {MAX_DEPTH} levels deep; "
                        "a GameDay is a few levels of mappings and lists"
                    ]
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_nodes(root: yaml.Node, source: str) -> None:
    """Refuse non-scalar mapping keys, aliases that contain themselves, and documents
    that are larger than MAX_NODES once every alias is expanded.

    Each distinct node is visited once; its expanded size is computed from its
    children's, so an alias bomb is measured without being expanded.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, Loc, bool]] = [(root, (), False)]
    while stack:
        node, loc, done = stack.pop()
        children: list[yaml.Node] = []
        child_locs: list[Loc] = []
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    what = "a list" if isinstance(key, yaml.SequenceNode) else "a mapping"
                    raise SpecError(
                        [
                            f"{source}:{key.start_mark.line + 1}: {format_loc(loc) or '(top)'}: "
                            f"a mapping key is {what}; keys must be plain names"
                        ]
                    )
                children += [key, value]
                child_locs += [loc, (*loc, key.value)]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
            child_locs = [(*loc, i) for i in range(len(children))]
        if done:
            on_path.discard(id(node))
            total = 1 + sum(size[id(c)] for c in children)
            if total > MAX_NODES:
                raise SpecError(
                    [
                        f"{source}:{node.start_mark.line + 1}: {format_loc(loc) or '(top)'}: more "
                        f"than {MAX_NODES} values once its aliases are expanded; refused"
                    ]
                )
            size[id(node)] = total
            continue
        if id(node) in size:
            continue
        on_path.add(id(node))
        stack.append((node, loc, True))
        for child, child_loc in zip(children, child_locs, strict=True):
            if id(child) in on_path:
                raise SpecError(
                    [
                        f"{source}:{child.start_mark.line + 1}: {format_loc(child_loc)}: "
                        "an alias refers to a value that contains it"
                    ]
                )
            if id(child) not in size:
                stack.append((child, child_loc, False))


def _record_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                child = (*loc, key_node.value)
                _record_lines(value_node, child, lines)
                lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, (*loc, i), lines)


def format_loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _clean_loc(loc: Sequence[str | int]) -> Loc:
    """Drop the discriminator tags pydantic adds (``spec.faults[0].blackhole.x``)."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if i >= 2 and isinstance(loc[i - 1], int) and (loc[i - 2], part) in _TAGS:
            continue
        if i >= 1 and (loc[i - 1], part) in _FIELD_TAGS:
            continue
        if isinstance(part, str) and (part.startswith("function-") or part == "[key]"):
            continue
        out.append(part)
    return tuple(out)


def _line_for(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _short(value: Any, limit: int = 60) -> str:
    """A user's value in an error line, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


#: pydantic error types -> our wording, from (input, ctx)
_REASONS: dict[str, Callable[[Any, Mapping[str, Any]], str]] = {
    "extra_forbidden": lambda _i, _c: "unknown field",
    "missing": lambda _i, _c: "required field is missing",
    "union_tag_invalid": lambda _i, c: (
        f"unknown type {c.get('tag')!r}; expected one of {c.get('expected_tags')}"
    ),
    "union_tag_not_found": lambda _i, _c: "the 'type' field is missing",
    "greater_than": lambda _i, c: f"must be > {c.get('gt')}",
    "greater_than_equal": lambda _i, c: f"must be >= {c.get('ge')}",
    "less_than_equal": lambda _i, c: f"must be <= {c.get('le')}",
    "string_pattern_mismatch": lambda i, c: f"{_short(i)} does not match {c.get('pattern')}",
    "literal_error": lambda i, c: f"{_short(i)} is not allowed; expected {c.get('expected')}",
    "finite_number": lambda _i, _c: "must be a finite number",
}


def _reason(err: Mapping[str, Any]) -> str:
    wording = _REASONS.get(err["type"])
    if wording is not None:
        return wording(err.get("input"), err.get("ctx") or {})
    return str(err["msg"]).removeprefix("Value error, ")


def _allowed_fields(loc: Loc, data: Any) -> str:
    """For an unknown field, list what is allowed there (helps catch typos)."""
    from chaosaa.spec import model as m

    parent = loc[:-1]
    models: dict[Loc, Any] = {(): m.GameDay, ("spec",): m.GameDaySpec}
    model = models.get(parent)
    if model is None:
        return ""
    names = sorted(f.alias or n for n, f in model.model_fields.items())
    return f" (allowed: {', '.join(names)})"


def _problems_from_validation(exc: ValidationError, data: Any) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    for err in exc.errors():
        loc = _clean_loc(err["loc"])
        reason = _reason(err)
        if err["type"] == "extra_forbidden":
            reason += _allowed_fields(loc, data)
        out.append((loc, reason))
    return out


def _format(
    source: str, problems: Iterable[tuple[Loc, str]], lines: Mapping[Loc, int]
) -> list[str]:
    out = []
    for loc, reason in problems:
        line = _line_for(loc, lines)
        where = f"{source}:{line}" if line else source
        field = format_loc(loc)
        out.append(f"{where}: {field}: {reason}" if field else f"{where}: {reason}")
    return out


def parse_yaml(text: str, source: str) -> tuple[Any, dict[Loc, int]]:
    """Parse one YAML document with duplicate-key detection and a line table."""
    try:
        _check_depth(text, source)
        loader = _LineLoader(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError([f"{source}: the file is empty"])
        _check_nodes(node, source)
        data = loader.construct_document(node)
        _record_lines(node, (), loader.lines)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    finally:
        loader.dispose()
    return data, loader.lines


def _yaml_error(exc: yaml.YAMLError, source: str) -> SpecError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}" if mark is not None else source
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    return SpecError([f"{where}: YAML error: {problem}"])


def apply_overrides(data: Any, overrides: Iterable[str], source: str) -> Any:
    """Apply ``--set spec.traffic.rate=100`` style overrides (values parsed as YAML)."""
    data = copy.deepcopy(data)
    for item in overrides:
        path, sep, raw = item.partition("=")
        if not sep or not path:
            raise SpecError([f"--set {item!r}: expected path=value, e.g. spec.traffic.rate=100"])
        try:
            value, _ = parse_yaml(raw, f"--set {path}")
        except SpecError as exc:
            if "YAML error" not in exc.problems[0] and "empty" not in exc.problems[0]:
                raise
            value = raw
        cursor = data
        parts = path.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(cursor, list):
                if not part.isdigit() or int(part) >= len(cursor):
                    raise SpecError([f"--set {item!r}: {format_loc(parts[: i + 1])}: no such item"])
                if last:
                    cursor[int(part)] = value
                else:
                    cursor = cursor[int(part)]
            elif isinstance(cursor, dict):
                if last:
                    cursor[part] = value
                else:
                    cursor = cursor.setdefault(part, {})
            else:
                raise SpecError([f"--set {item!r}: {'.'.join(parts[:i])} is not a mapping"])
    return data


def load_gameday_text(text: str, source: str, overrides: Iterable[str] = ()) -> GameDay:
    data, lines = parse_yaml(text, source)
    data = apply_overrides(data, overrides, source)
    return validate_gameday(data, source, lines)


def validate_gameday(data: Any, source: str, lines: Mapping[Loc, int] | None = None) -> GameDay:
    """Validate a parsed document (a dict) into a GameDay or raise SpecError."""
    lines = lines or {}
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "nothing"
        raise SpecError([f"{source}: expected a GameDay mapping at the top level, got {kind}"])
    try:
        gameday = GameDay.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format(source, _problems_from_validation(exc, data), lines)) from None
    except (RecursionError, OverflowError, TypeError, ValueError) as exc:
        # the checks above should leave nothing that gets here: still no traceback
        raise SpecError([f"{source}: cannot be read as a GameDay: {exc}"]) from None
    problems = semantic_problems(gameday.spec)
    if problems:
        raise SpecError(_format(source, problems, lines))
    return gameday


def load_gameday(path: str | Path, overrides: Iterable[str] = ()) -> GameDay:
    """Read and validate a GameDay file; raise SpecError naming file, field and reason."""
    p = Path(path)
    source = str(path)
    try:
        if p.is_file() and p.stat().st_size > MAX_FILE_BYTES:
            raise SpecError(
                [
                    f"{source}: {p.stat().st_size} bytes; a GameDay file is at most "
                    f"{MAX_FILE_BYTES >> 10} KiB"
                ]
            )
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SpecError([f"{source}: no such file"]) from None
    except IsADirectoryError:
        raise SpecError([f"{source}: is a directory, expected a GameDay YAML file"]) from None
    except OSError as exc:
        raise SpecError([f"{source}: cannot read: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            [
                f"{source}:{line}: not valid UTF-8 "
                f"(byte 0x{raw[exc.start]:02x} at offset {exc.start})"
            ]
        ) from None
    return load_gameday_text(text, source, overrides)
