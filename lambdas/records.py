"""Typed records at the Lambda edges: a `TypedDict` validated once, by a JSON Schema generated from its annotations.

The workflow's payloads stay plain JSON on their way through Step Functions, so the records are `TypedDict`s
(lambdas/job_spec.py, and each handler's event next to its handler). A handler calls `parse(Record, event)` first:
the value is checked against the record's annotations (every required field present, no field the record does not
declare, every value of its declared type, nested records and containers included) and handed on typed, so nothing
downstream casts or re-converts a field.

Why not pydantic (or Powertools' parser, which is pydantic): its core is a compiled extension, and the Lambda bundle
takes only pure-Python distributions copied from the build machine (stacks/packaging.py, LAMBDA_BUNDLE). The
validator here is fastjsonschema (already bundled for the execution input), compiled once per record per process.
The schema is derived from the annotations (`typing.get_type_hints`), so a field added to a record needs no change
here: it is checked the moment it is declared.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from typing import (
    Any,
    Literal,
    NotRequired,
    Required,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

import fastjsonschema

from lambdas.errors import WorkflowError

Record = TypeVar("Record")

# Records whose producer is AWS (EventBridge, CloudFormation): their envelopes gain fields over time, so a field
# that is not declared is allowed there; every field that is declared is still checked.
_OPEN_RECORDS: set[type] = set()

_SCALARS: dict[object, str] = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


class InvalidRecord(WorkflowError):
    """A Lambda's event is not the record its handler declares (a field missing, of another type, or unknown): a
    deployment or state-machine bug, since the workflow builds every event itself. Nothing was done."""

    def __init__(self, record: str, path: str, problem: str) -> None:
        self.record = record
        self.path = path
        self.problem = problem
        super().__init__(f"Invalid {record}: {path}: {problem}")


def open_record(record: type[Record]) -> type[Record]:
    """Mark a record as open: fields it does not declare are allowed (AWS-built envelopes), declared ones checked."""
    _OPEN_RECORDS.add(record)
    return record


def schema(record: type) -> dict[str, Any]:
    """The JSON Schema of a TypedDict record, from its annotations (each field's Python type is its description)."""
    return _schema_of(record)


def parse(record: type[Record], value: object) -> Record:
    """`value` as the record, checked against its annotations; `InvalidRecord` naming the field path otherwise."""
    try:
        _validator(record)(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise _invalid(record.__name__, exc) from None
    # The one cast: the schema above has just proved the value has the record's shape.
    return cast(Record, value)


# Compiled once per record per process (a Lambda container compiles each of its records on its first event).
_VALIDATORS: dict[type, Callable[[object], object]] = {}


def _validator(record: type) -> Callable[[object], object]:
    if record not in _VALIDATORS:
        _VALIDATORS[record] = fastjsonschema.compile(schema(record))
    return _VALIDATORS[record]


def _schema_of(annotation: object) -> dict[str, Any]:
    description = _type_name(annotation)
    if annotation is Any or annotation is object:
        return {"description": description}
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation], "description": description}
    if isinstance(annotation, type) and is_typeddict(annotation):
        hints = get_type_hints(annotation)
        return {
            "type": "object",
            "description": description,
            "properties": {name: _schema_of(hint) for name, hint in hints.items()},
            "required": _required_keys(annotation),
            "additionalProperties": annotation in _OPEN_RECORDS,
        }
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schema_of(arg) for arg in args], "description": description}
    if origin is Literal:
        return {"enum": list(args), "description": description}
    if origin in (list, Sequence):
        return {"type": "array", "items": _schema_of(args[0]) if args else {}, "description": description}
    if origin in (dict, Mapping) and (not args or args[0] is str):
        values = _schema_of(args[1]) if args else {}
        return {"type": "object", "additionalProperties": values, "description": description}
    raise TypeError(f"records: no JSON Schema for the annotation {annotation!r}: use JSON types, lists, dicts, records")


def _required_keys(record: type) -> list[str]:
    """The record's required fields. Python 3.11 cannot see `NotRequired[...]`/`Required[...]` in an annotation that
    `from __future__ import annotations` left a string (its `__required_keys__` then follows `total=` alone), so the
    wrappers are read from the evaluated annotations; inherited fields keep what their own class said."""
    required = set(record.__required_keys__)  # type: ignore[attr-defined]
    for name, hint in get_type_hints(record, include_extras=True).items():
        if get_origin(hint) is NotRequired:
            required.discard(name)
        elif get_origin(hint) is Required:
            required.add(name)
    return sorted(required)


def _type_name(annotation: object) -> str:
    """The annotation as it reads in the source: `int | str`, `list[str]`, `JobSpec`."""
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and not get_args(annotation):
        return annotation.__name__
    if get_origin(annotation) in (Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in get_args(annotation))
    return str(annotation).replace("typing.", "").replace("collections.abc.", "")


def _invalid(record: str, exc: fastjsonschema.JsonSchemaValueException) -> InvalidRecord:
    # fastjsonschema names the value `data`: ["data", "job", "epochs"] is the record's `job.epochs`.
    parts = [str(part) for part in (exc.path or [])[1:]]
    path = ".".join(parts) or "(the record)"
    definition = exc.definition or {}
    if exc.rule == "required":
        missing = sorted(set(definition.get("required", [])) - set(_at(exc.value)))
        return InvalidRecord(record, path, f"missing required field(s) {', '.join(missing)}")
    if exc.rule == "additionalProperties":
        unknown = sorted(set(_at(exc.value)) - set(definition.get("properties", {})))
        return InvalidRecord(record, path, f"unknown field(s) {', '.join(unknown)} (not in the record)")
    expected = definition.get("description") or exc.message
    got = exc.value
    return InvalidRecord(record, path, f"expected {expected}, got {got!r} ({type(got).__name__})")


def _at(value: object) -> list[str]:
    return [str(key) for key in value] if isinstance(value, dict) else []
