"""Issue 19 in the synthesized template: Status never abandons a job, iterations end empty, the reconciler's schedule,
the SageMaker role's trust policy and Notify's retries (each fix's documentation is cited where the fix lives)."""

from __future__ import annotations

from typing import Any

from stacks.constructs.hardened import RETRYABLE_ERRORS
from tests.infra.test_workflow_template import _definition, _function, _resources


def _iteration(template: dict[str, Any]) -> dict[str, Any]:
    [jobs] = [s for s in _definition(template)["States"].values() if s["Type"] == "Map"]
    return jobs.get("ItemProcessor") or jobs["Iterator"]


def test_status_retries_any_describe_failure_for_hours_before_failing_typed(synthesized) -> None:
    from stacks.config import DEFAULT_WATCH_RETRY

    # Given the Status task of the synthesized state machine
    status = _iteration(synthesized.main_json)["States"]["Status"]

    # Then its one retrier covers Lambda faults, throttling, a crashed function and any describe error ...
    [retrier] = status["Retry"]
    assert set(retrier["ErrorEquals"]) == {*RETRYABLE_ERRORS, "JobStatusUnavailable", "Lambda.Unknown"}
    assert retrier["MaxAttempts"] == DEFAULT_WATCH_RETRY.max_attempts and "JitterStrategy" not in retrier
    waited, delay = 0.0, float(retrier["IntervalSeconds"])
    for _ in range(retrier["MaxAttempts"]):
        waited += min(delay, retrier["MaxDelaySeconds"])
        delay *= retrier["BackoffRate"]
    assert waited > 12 * 3600  # longer than a regional API incident
    # ... only a job that provably does not exist goes to Classify, anything else fails the execution by name
    # (so the lifecycle's Cleanup stops and records the run's jobs), never "lost job, stop watching".
    catches = {tuple(c["ErrorEquals"]): c["Next"] for c in status["Catch"]}
    assert catches == {("TrainingJobNotFound",): "Classify", ("States.ALL",): "JobUnwatched"}
    unwatched = _iteration(synthesized.main_json)["States"]["JobUnwatched"]
    assert unwatched["Type"] == "Fail" and unwatched["Error"] == "JobUnwatched"


def test_every_map_iteration_ends_with_an_empty_output(synthesized) -> None:
    states = _iteration(synthesized.main_json)["States"]
    ends = {name: state for name, state in states.items() if state.get("End")}
    assert list(ends) == ["JobDone"]
    assert ends["JobDone"]["Type"] == "Pass" and ends["JobDone"]["Result"] == {}
    assert "ResultPath" not in ends["JobDone"]  # the result replaces the whole state


def test_notify_retries_kms_throttling_of_the_encrypted_topic(synthesized) -> None:
    notify = _definition(synthesized.main_json)["States"]["Notify"]
    retried = {error for retrier in notify["Retry"] for error in retrier["ErrorEquals"]}
    assert "SNS.KMSThrottlingException" in retried


def test_sagemaker_role_trust_is_bound_to_this_account_and_region(synthesized) -> None:
    [role] = [
        v for k, v in _resources(synthesized.main_json, "AWS::IAM::Role").items() if k.startswith("SageMakerRole")
    ]
    [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    conditions = statement["Condition"]
    assert conditions["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    source_arn = conditions["ArnLike"]["aws:SourceArn"]
    assert "sagemaker" in str(source_arn) and "AWS::AccountId" in str(source_arn)


def test_the_reconciler_runs_on_a_schedule_with_its_own_least_privilege_role(synthesized) -> None:
    template = synthesized.main_json
    reconcile, props = _function(template, "reconcile")
    [rule] = [r for r in _resources(template, "AWS::Events::Rule").values() if "ScheduleExpression" in r["Properties"]]
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    [target] = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [reconcile, "Arn"]} and "DeadLetterConfig" in target
    variables = props["Environment"]["Variables"]
    assert {"TABLE_NAME", "TOPIC_ARN", "JOB_NAME_PREFIX", "STATE_MACHINE_ARN", "RECONCILE_LOOKBACK_DAYS"} <= set(
        variables
    )
    assert "SAGEMAKER_ROLE_ARN" not in variables and "BUCKET_NAME" not in variables  # it launches and reports nothing
