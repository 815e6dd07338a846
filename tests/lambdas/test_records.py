"""Typed records at the Lambda edges (lambdas/records.py): schemas generated from TypedDict annotations, values parsed
once, errors that name the field."""

from __future__ import annotations

import typing
from typing import Any, Literal, NotRequired, TypedDict

import pytest

from lambdas import records
from lambdas.handlers.classify import ClassifyEvent
from lambdas.handlers.remedy import RemedyEvent
from lambdas.job_spec import JobSpec
from lambdas.records import InvalidRecord
from tests.support.lambdas import one_job


class Inner(TypedDict):
    size: int


class Sample(TypedDict):
    name: str
    count: int
    ratio: float
    flag: bool
    length: int | str
    maybe: float | None
    tags: list[str]
    scores: dict[str, float]
    inner: Inner
    kind: Literal["a", "b"]
    note: NotRequired[str]


def _sample(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "name": "x",
        "count": 2,
        "ratio": 1,  # a JSON integer is a number
        "flag": True,
        "length": "auto",
        "maybe": None,
        "tags": ["a"],
        "scores": {"total": 1.5},
        "inner": {"size": 3},
        "kind": "a",
    }
    return {**value, **overrides}


def test_a_plan_job_spec_parses_as_itself() -> None:
    # Given a JobSpec exactly as Plan builds it
    job = one_job()
    # When it is parsed at an edge
    parsed = records.parse(JobSpec, job)
    # Then it is the same value, typed
    assert parsed is job


def test_a_remedied_attempt_with_its_optional_fields_parses() -> None:
    job = {**one_job(), "attempt": 2, "base_job_name": "b", "prior_cost_usd": 0.5, "tried_instance_types": ["x"]}
    assert records.parse(JobSpec, job)["attempt"] == 2


def test_a_missing_job_spec_field_is_named() -> None:
    # Given a spec without its instance count
    job = dict(one_job())
    del job["instance_count"]
    # When it is parsed, Then the error names the field
    with pytest.raises(
        InvalidRecord, match=r"Invalid JobSpec: \(the record\): missing required field\(s\) instance_count"
    ):
        records.parse(JobSpec, job)


def test_a_wrong_type_names_the_field_and_the_expected_type() -> None:
    job = {**one_job(), "instance_count": "2"}
    with pytest.raises(InvalidRecord, match=r"JobSpec: instance_count: expected int, got '2' \(str\)"):
        records.parse(JobSpec, job)


def test_a_bool_is_not_an_int() -> None:
    with pytest.raises(InvalidRecord, match="count: expected int, got True"):
        records.parse(Sample, _sample(count=True))


def test_an_extra_field_is_named() -> None:
    job = {**one_job(), "instance_cuont": 2}
    with pytest.raises(InvalidRecord, match=r"unknown field\(s\) instance_cuont"):
        records.parse(JobSpec, job)


def test_a_nested_field_is_named_by_its_path() -> None:
    # Given Remedy's event whose job has a wrong epochs value
    event = {
        "job": {**one_job(), "epochs": "three"},
        "failure": {"status": {}, "failure_class": "x", "failure_evidence": ""},
    }
    # Then the path runs from the event to the field
    with pytest.raises(InvalidRecord, match=r"Invalid RemedyEvent: job\.epochs: expected float, got 'three'"):
        records.parse(RemedyEvent, event)


def test_unions_optionals_containers_literals_and_nested_records_are_checked() -> None:
    assert records.parse(Sample, _sample())["length"] == "auto"
    assert records.parse(Sample, _sample(length=512, maybe=0.5, note="n"))["length"] == 512
    for field, bad, expected in [
        ("length", 1.5, "int | str"),
        ("maybe", "x", "float | None"),
        ("tags", ["a", 1], "str"),
        ("scores", {"total": "x"}, "float"),
        ("kind", "c", "Literal"),
    ]:
        with pytest.raises(InvalidRecord, match=rf"{field}.*expected {expected}"):
            records.parse(Sample, _sample(**{field: bad}))
    with pytest.raises(InvalidRecord, match=r"inner: missing required field\(s\) size"):
        records.parse(Sample, _sample(inner={}))


def test_not_required_fields_may_be_absent_under_postponed_annotations() -> None:
    # Python 3.11 alone would count `note: NotRequired[str]` (a string here) as required.
    assert records.schema(Sample)["required"] == sorted(set(Sample.__annotations__) - {"note"})
    assert records.schema(ClassifyEvent)["required"] == ["job"]


def test_an_open_record_allows_undeclared_fields_but_checks_declared_ones() -> None:
    @records.open_record
    class Envelope(TypedDict):
        source: str

    assert records.parse(Envelope, {"source": "aws.states", "version": "0"})["source"] == "aws.states"
    with pytest.raises(InvalidRecord, match="source: expected str"):
        records.parse(Envelope, {"source": 1})


def test_the_job_spec_schema_covers_every_annotation() -> None:
    # Given JobSpec's annotations (its attempt fields included)
    hints = typing.get_type_hints(JobSpec)
    schema = records.schema(JobSpec)
    # Then every field is a property, required exactly when JobSpec requires it, and nothing else is allowed
    assert set(schema["properties"]) == set(hints)
    assert set(schema["required"]) == set(JobSpec.__required_keys__)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["max_seq_length"]["description"] == "int | str"
    assert schema["properties"]["attempt"] == {"type": "integer", "description": "int"}


def test_an_annotation_without_a_json_form_is_refused_when_the_schema_is_built() -> None:
    class Odd(TypedDict):
        when: set[int]

    with pytest.raises(TypeError, match="no JSON Schema"):
        records.schema(Odd)


def test_a_non_object_value_is_refused() -> None:
    with pytest.raises(InvalidRecord, match=r"\(the record\): expected JobSpec, got None"):
        records.parse(JobSpec, None)


def test_launch_refuses_a_malformed_spec_before_calling_sagemaker(lambda_context: Any) -> None:
    # Given a spec whose instance count is a string (before records, Launch cast it and sent it on)
    from lambdas.handlers import launch

    job = {**one_job(), "instance_count": "2"}
    # When Launch runs (no AWS here: it must fail before any call), Then the typed error names the field
    with pytest.raises(InvalidRecord, match="instance_count"):
        launch.handler(job, lambda_context)
