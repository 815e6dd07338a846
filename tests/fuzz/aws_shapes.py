"""Check a request against botocore's service model, including what botocore's own validator leaves out.

`botocore.validate.ParamValidator` checks types, required members and `min` lengths, but neither `max` lengths nor
`pattern`s (the service does, and answers ValidationException after the request left). This module walks the same
shape and checks those too, so a name the project builds is known valid before any request is sent.

The service's patterns are Java regular expressions: `\\p{L}` classes need the `regex` module (a transformers
dependency, already installed), and Java's `.` does not match any line terminator, where Python's only skips `\\n`.
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.session
import regex
from botocore.model import Shape
from botocore.validate import ParamValidator

# Java's `.` excludes all of these; Python's (and `regex`'s) only the first.
_JAVA_LINE_TERMINATORS = "\n\r\u0085\u2028\u2029"


@functools.cache
def operation_input(service: str, operation: str) -> Shape:
    """The input shape of one API operation, from the installed botocore's service model."""
    return botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape


@functools.cache
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern)


def _string_problems(shape: Shape, value: str, path: str) -> list[str]:
    found = []
    meta = shape.metadata
    if "max" in meta and len(value) > meta["max"]:
        found.append(f"{path}: {len(value)} characters > max {meta['max']}")
    if "min" in meta and len(value) < meta["min"]:
        found.append(f"{path}: {len(value)} characters < min {meta['min']}")
    pattern = meta.get("pattern")
    if pattern is not None:
        if not _compiled(pattern).fullmatch(value):
            found.append(f"{path}: {value!r} does not match {pattern}")
        elif "." in pattern and any(char in value for char in _JAVA_LINE_TERMINATORS):
            found.append(f"{path}: {value!r} has a line terminator that Java's `.` in {pattern} does not match")
    return found


def shape_problems(shape: Shape, value: Any, path: str = "") -> list[str]:
    """Length and pattern violations of `value` against `shape` (and every nested member), as readable lines."""
    kind = shape.type_name
    if kind == "string" and isinstance(value, str):
        return _string_problems(shape, value, path)
    found: list[str] = []
    if kind == "structure" and isinstance(value, dict):
        for name, member in value.items():
            if name in shape.members:
                found += shape_problems(shape.members[name], member, f"{path}.{name}" if path else name)
    elif kind == "list" and isinstance(value, list):
        meta = shape.metadata
        if "max" in meta and len(value) > meta["max"]:
            found.append(f"{path}: {len(value)} items > max {meta['max']}")
        for index, item in enumerate(value):
            found += shape_problems(shape.member, item, f"{path}[{index}]")
    elif kind == "map" and isinstance(value, dict):
        meta = shape.metadata
        if "max" in meta and len(value) > meta["max"]:
            found.append(f"{path}: {len(value)} entries > max {meta['max']}")
        for key, item in value.items():
            found += shape_problems(shape.key, key, f"{path} key")
            found += shape_problems(shape.value, item, f"{path}[{key!r}]")
    return found


def request_problems(service: str, operation: str, request: dict[str, Any]) -> list[str]:
    """Everything wrong with `request` for `operation`: botocore's validator's report plus lengths and patterns."""
    shape = operation_input(service, operation)
    report = ParamValidator().validate(request, shape)
    found = [report.generate_report()] if report.has_errors() else []
    return found + shape_problems(shape, request)
