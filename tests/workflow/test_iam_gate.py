"""The IAM completeness gate over an offline run: every AWS call the handlers make, every authorization a service
makes on their behalf and every service-side need is allowed by the synthesized policy of the role that makes it;
and every grant is needed: removing any one of them makes the gate fail, naming what is then missing."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from finetune.local.backends import ScriptedOutcome
from finetune.local.calls import AwsCall
from stacks.constructs.grants import GRANTS
from tests.support.iam_gate import Gate, Need, action_matches
from tests.support.workflow import GOOD_METRICS, approach_of, running_account
from tests.workflow.test_state_machine import OOM_FAILURE, THREE_JOBS

# One run that takes every branch of every handler: a job that completes, one that fails (Classify describes it,
# Remedy retries it), one refused for quota (Remedy looks up the fallback types' quotas and prices) and one whose name
# is taken (Launch describes the existing job).
GATE_RUN = {**THREE_JOBS, "experiments": [*THREE_JOBS["experiments"], {"model": "llama2-7b", "approach": "lora"}]}
# A job SageMaker describes once (Status sees it Failed) and never again: Classify fails on it, and Record describes
# it after the Catch. Its own run, after the aborted one and the reconciler: both describe every job, and would fail
# on this one. (A job Status itself cannot describe is retried, then fails the execution: tests/leaks.)
UNDESCRIBABLE_RUN = {"experiments": [{"model": "gpt-neox-20b", "approach": "qlora"}], "budget_usd": 500}

# CDK's SqsDestination grants GetQueueAttributes and GetQueueUrl beside SendMessage; Lambda delivers a failed
# asynchronous invocation with SendMessage alone, so no need covers the other two.
CDK_QUEUE_EXTRAS = {"sqs:GetQueueAttributes", "sqs:GetQueueUrl"}


def _grants_function_versions(removed: Any) -> bool:
    """CDK's LambdaInvoke grants each function's versions and aliases (`<function ARN>:*`) beside the function; the
    definition invokes unqualified ARNs, so no need covers them (workflow.py acknowledges them to cdk-nag too)."""
    match removed:
        case {"Fn::Join": ["", [{"Fn::GetAtt": [_, "Arn"]}, ":*"]]}:
            return True
    return False


def _outcome(request: dict[str, Any]) -> ScriptedOutcome:
    if "llama" in request["TrainingJobName"]:
        return ScriptedOutcome(launch_error="ResourceInUse")
    if "neox" in request["TrainingJobName"]:
        return ScriptedOutcome(
            status="Failed",
            secondary_status="Failed",
            polls_in_progress=0,
            describe_error="ValidationException",
            describe_error_after=1,
        )
    if "aborted" in request["TrainingJobName"] or "orphan" in request["TrainingJobName"]:
        return ScriptedOutcome(polls_in_progress=10_000)
    return {
        "full": ScriptedOutcome(metrics=GOOD_METRICS),
        "lora": ScriptedOutcome(status="Failed", secondary_status="Failed", failure_reason=OOM_FAILURE),
        "qlora": ScriptedOutcome(launch_error="ResourceLimitExceeded", failure_reason="service limit is 0"),
    }[approach_of(request)]


ABORTED_RUN = {"experiments": [{"model": "mistral-7b", "approach": "full"}], "budget_usd": 500}


def _wait_until(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


@dataclass(frozen=True)
class Recorded:
    gate: Gate
    calls: list[AwsCall]
    needs: list[Need]


@pytest.fixture(scope="module")
def recorded(workflow) -> Recorded:
    with running_account(workflow, _outcome) as account:
        result = account.execute(GATE_RUN, "iam-gate")
        assert result.status == "SUCCEEDED", result.cause
        # A second run, stopped while its job trains, takes Cleanup's branches (search, stop, record, report, notify).
        aborted = account.start(ABORTED_RUN, "iam-gate-aborted")
        _wait_until(lambda: any("aborted" in name for name in account.services.create_calls))
        account.stop_execution(aborted, error="OperatorStop", cause="the IAM gate's stopped run")
        assert account.wait(aborted).status == "ABORTED"
        # The reconciler's branches (list, describe, tags, executions, stop, record, notify): a job no run watches.
        orphan = account.seed_orphan_job("orphan-left-behind", "run-nobody-watches")
        [tick] = account.run_schedules()
        assert tick["result"]["stopped"] == [orphan], tick
        assert account.execute(UNDESCRIBABLE_RUN, "iam-gate-undescribable").status == "SUCCEEDED"
    gate = Gate(workflow.template, account.resolver)
    calls = account.calls.calls
    return Recorded(gate, calls, gate.needs(calls))


def test_every_call_and_service_side_need_is_allowed_by_the_role_that_makes_it(recorded) -> None:
    denied = recorded.gate.denied(recorded.needs)

    assert not denied, "denied:\n" + "\n".join(map(str, denied))


def test_every_workflow_function_made_calls_in_the_recorded_run(recorded) -> None:
    # A function the run never reaches would be unchecked: give it a scenario (events go through dispatch).
    functions = {
        logical_id
        for logical_id, resource in recorded.gate.template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }

    assert functions == {call.function for call in recorded.calls}


def test_every_role_has_a_row_in_the_grants_table_or_is_the_training_jobs(recorded) -> None:
    assert set(recorded.gate.principal_names().values()) - {"TrainingJob"} <= set(GRANTS)


def test_removing_any_grant_fails_the_gate_naming_what_is_missing(recorded) -> None:
    gate, names = recorded.gate, recorded.gate.principal_names()
    survivors = set()
    for mutation in gate.mutations():
        needs = [need for need in recorded.needs if need.role == mutation.role]
        denied = gate.denied(needs, mutation.apply(gate.template))
        if mutation.element == "Action":
            caught = any(action_matches(mutation.removed, need.action) for need in denied)
        else:
            caught = bool(denied)
        if not caught and not _grants_function_versions(mutation.removed) and mutation.removed not in CDK_QUEUE_EXTRAS:
            removed = mutation.removed if isinstance(mutation.removed, str) else json.dumps(mutation.removed)
            survivors.add((names[mutation.role], removed))

    assert survivors == set()
