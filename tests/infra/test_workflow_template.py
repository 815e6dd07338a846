"""What the synthesized workflow promises a real account: timeouts that outlast the SDK's retries, retried function
timeouts, a Launch that waits out a busy quota, the Lambdas' contract environment, the lifecycle rule, and logs
encrypted with the data key."""

from __future__ import annotations

import json
from typing import Any

import pytest

LAMBDA_TIMEOUT_ERRORS = {"Sandbox.Timedout", "Lambda.ClientExecutionTimeoutException"}


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def _function(template: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    [(logical_id, function)] = [
        (k, v)
        for k, v in _resources(template, "AWS::Lambda::Function").items()
        if v["Properties"].get("Handler") == f"lambdas.handlers.{name}.handler"
    ]
    return logical_id, function["Properties"]


def _definition(template: dict[str, Any]) -> dict[str, Any]:
    """The state machine's ASL with every intrinsic replaced by a `<logical id>` marker."""
    [machine] = _resources(template, "AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else f"<{json.dumps(p)}>".replace('"', "'") for p in parts)
    return json.loads(text)


def _task_states(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}
    for name, state in definition["States"].items():
        if state["Type"] == "Task":
            states[name] = state
        if state["Type"] == "Map":
            states.update(_task_states(state.get("ItemProcessor") or state["Iterator"]))
    return states


def _lambda_of(state: dict[str, Any]) -> str:
    return state["Resource"].split("'Fn::GetAtt': ['")[1].split("'")[0] if "Fn::GetAtt" in state["Resource"] else ""


def _botocore_budget_seconds() -> float:
    """One call's worst case with lambdas/aws.py's client: every attempt hangs connect + read timeout, every retry
    sleeps its longest standard-mode backoff (min(20, 2^(n-1)) s). Computed here, independently of the stack."""
    from lambdas import aws

    attempts = aws.DEFAULT_MAX_ATTEMPTS
    backoff = sum(min(20, 2 ** (n - 1)) for n in range(1, attempts))
    return attempts * (aws.DEFAULT_CONNECT_TIMEOUT + aws.DEFAULT_READ_TIMEOUT) + backoff


def test_every_lambda_task_retries_function_timeouts(synthesized) -> None:
    tasks = {n: s for n, s in _task_states(_definition(synthesized.main_json)).items() if _lambda_of(s)}
    assert set(tasks) >= {"Plan", "Launch", "Status", "Record", "RecordFailure", "Report"}
    for name, state in tasks.items():
        retried = {error for retrier in state.get("Retry", []) for error in retrier["ErrorEquals"]}
        assert retried >= LAMBDA_TIMEOUT_ERRORS, name


def test_every_function_outlasts_the_sdk_retry_budget_and_every_task_outlasts_its_function(synthesized) -> None:
    # Status had 120 s against a 190 s budget: a slow DescribeTrainingJob became Sandbox.Timedout, and the Catch
    # recorded a running job as Failed.
    template = synthesized.main_json
    budget = _botocore_budget_seconds()
    timeouts = {
        logical_id: function["Properties"]["Timeout"]
        for logical_id, function in _resources(template, "AWS::Lambda::Function").items()
        if function["Properties"].get("Handler", "").startswith("lambdas.")
    }
    assert len(timeouts) == 9  # Plan, Launch, Status, Record, Classify, Remedy, Report, Cleanup, Reconcile
    for logical_id, timeout in timeouts.items():
        assert budget < timeout <= 900, (logical_id, timeout, budget)
    for name, state in _task_states(_definition(template)).items():
        function = _lambda_of(state)
        if function:
            assert state["TimeoutSeconds"] > timeouts[function], name


def test_launch_waits_out_a_busy_instance_quota_with_the_configured_long_interval(synthesized) -> None:
    launch = _task_states(_definition(synthesized.main_json))["Launch"]
    [quota] = [r for r in launch["Retry"] if r["ErrorEquals"] == ["ResourceLimitReached"]]
    # cdk.json keeps the defaults: 300 s x 1.5^n, at most 1 h apart, 8 retries, no jitter (a retry at 0 s is useless).
    assert quota["IntervalSeconds"] == 300
    assert quota["BackoffRate"] == 1.5
    assert quota["MaxAttempts"] == 8
    assert quota["MaxDelaySeconds"] == 3600
    assert "JitterStrategy" not in quota
    # The Catch still records the job as failed once the retries are spent.
    assert launch["Catch"][0]["ErrorEquals"] == ["States.ALL"]


def test_the_quota_retry_interval_comes_from_config() -> None:
    from finetune.local.runner import FAST_SETTINGS, synthesize

    launch = _task_states(_definition(synthesize(FAST_SETTINGS).template))["Launch"]
    [quota] = [r for r in launch["Retry"] if r["ErrorEquals"] == ["ResourceLimitReached"]]
    assert quota["IntervalSeconds"] == FAST_SETTINGS["quota_retry"]["interval_seconds"]


def test_each_lambda_gets_the_contract_environment(synthesized) -> None:
    template = synthesized.main_json
    [key] = _resources(template, "AWS::KMS::Key")
    [topic] = _resources(template, "AWS::SNS::Topic")
    [table] = _resources(template, "AWS::DynamoDB::Table")

    _, launch = _function(template, "launch")
    assert launch["Environment"]["Variables"]["DATA_KEY_ARN"] == {"Fn::GetAtt": [key, "Arn"]}

    _, plan = _function(template, "plan")
    assert plan["Environment"]["Variables"]["EXECUTION_TIMEOUT_SECONDS"] == str(48 * 3600)
    assert plan["Environment"]["Variables"]["STATUS_POLL_SECONDS"] == "300"

    _, cleanup = _function(template, "cleanup")
    variables = cleanup["Environment"]["Variables"]
    assert variables["TOPIC_ARN"] == {"Ref": topic}
    assert variables["TABLE_NAME"] == {"Ref": table}
    assert variables["JOB_NAME_PREFIX"].startswith("finetune-")
    assert int(variables["CLEANUP_STOP_WAIT_SECONDS"]) > 120  # SageMaker gives a stopped script 120 s
    assert "SAGEMAKER_ROLE_ARN" not in variables  # Cleanup launches nothing


def test_failed_timed_out_and_aborted_executions_of_this_state_machine_invoke_cleanup(synthesized) -> None:
    template = synthesized.main_json
    [machine] = _resources(template, "AWS::StepFunctions::StateMachine")
    [(rule_id, rule)] = [
        (k, r) for k, r in _resources(template, "AWS::Events::Rule").items() if "EventPattern" in r["Properties"]
    ]
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert pattern["detail"] == {"stateMachineArn": [{"Ref": machine}], "status": ["FAILED", "TIMED_OUT", "ABORTED"]}
    [target] = rule["Properties"]["Targets"]
    cleanup, _ = _function(template, "cleanup")
    assert target["Arn"] == {"Fn::GetAtt": [cleanup, "Arn"]}
    # An event that cannot be delivered, or whose Cleanup fails 3 times, is kept in a queue, not lost.
    [queue] = _resources(template, "AWS::SQS::Queue")
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [queue, "Arn"]}
    [invoke_config] = [
        c
        for c in _resources(template, "AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"] == {"Ref": cleanup}
    ]
    assert invoke_config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [queue, "Arn"]
    }
    permissions = [
        p["Properties"]
        for p in _resources(template, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
        and p["Properties"]["SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}
    ]
    assert permissions and all(p["FunctionName"] == {"Fn::GetAtt": [cleanup, "Arn"]} for p in permissions)


@pytest.mark.parametrize("stack", ["main", "quotas"])
def test_every_log_group_is_encrypted_with_the_data_key(synthesized, stack) -> None:
    template = synthesized.main_json if stack == "main" else synthesized.quotas.to_json()
    [key] = _resources(synthesized.main_json, "AWS::KMS::Key")
    groups = _resources(template, "AWS::Logs::LogGroup")
    assert groups
    for logical_id, group in groups.items():
        key_id = json.dumps(group["Properties"].get("KmsKeyId"))
        assert key in key_id, (logical_id, key_id)  # GetAtt in the stack, an import of its Arn in the other


def test_cloudwatch_logs_of_this_account_and_region_may_use_the_data_key(synthesized) -> None:
    [key] = _resources(synthesized.main_json, "AWS::KMS::Key").values()
    [statement] = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    ]
    assert {"kms:Encrypt*", "kms:Decrypt*", "kms:GenerateDataKey*"} <= set(statement["Action"])
    context = statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert json.dumps(context).endswith(':*"]]}') and ":logs:us-east-1:" in json.dumps(context)
