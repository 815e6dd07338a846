"""Plan, Record and Report parse their events into typed records first: a malformed event is refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.handlers import plan as plan_handler
from lambdas.handlers import record as record_handler
from lambdas.handlers import report as report_handler
from lambdas.records import InvalidRecord


def test_record_refuses_a_job_whose_instance_count_is_not_an_int(lambda_context: Any) -> None:
    # Given a Record event whose job carries a string where the JobSpec has an int (before: int() re-cast it)
    event = {"job": {"job_name": "j", "instance_count": "2"}, "status": {"status": "Completed"}}
    # When Record handles it, Then it is refused naming the record and field, before anything is written
    with pytest.raises(InvalidRecord, match=r"Invalid RecordEvent: job"):
        record_handler.handler(event, lambda_context)


def test_record_refuses_an_event_without_its_job(lambda_context: Any) -> None:
    # Given a Record event that lost its job (before: a KeyError deep in the handler)
    # When Record handles it, Then the missing field is named
    with pytest.raises(InvalidRecord, match=r"RecordEvent: \(the record\): missing required field\(s\) job"):
        record_handler.handler({"status": {"status": "Completed"}}, lambda_context)


def test_report_refuses_an_event_without_a_run_id(lambda_context: Any) -> None:
    # Given a Report event without run_id, When Report handles it, Then InvalidRecord names the missing field
    with pytest.raises(InvalidRecord, match=r"Invalid ReportEvent: \(the record\): missing required field\(s\) run_id"):
        report_handler.handler({}, lambda_context)


def test_plan_refuses_an_execution_name_that_is_not_a_string(lambda_context: Any) -> None:
    # Given a Plan event whose execution name is a number, When Plan handles it, Then InvalidRecord names it
    with pytest.raises(InvalidRecord, match=r"Invalid PlanEvent: execution_name: expected str, got 7 \(int\)"):
        plan_handler.handler({"input": {}, "execution_name": 7}, lambda_context)
