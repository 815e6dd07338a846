"""docs/ci.md's CI policy allows every call of the CI path, by the project's IAM evaluator (tests/support/iam_gate.py):
the AWS CLI commands of examples/ci/run-study.sh and the workflow, and the calls the CLI's CI commands make in a run
against the emulated account, with the placeholders filled in with that account's names."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from finetune.deployment import deployment_config
from finetune.local.backends import ScriptedOutcome
from finetune.local.calls import AwsCall, attributed_to
from finetune.local.runner import ACCOUNT_ID, DATA_BUCKET, REGION, TABLE_NAME
from tests.support import iam_gate
from tests.support.cli import answer_quota_requests, finetune
from tests.support.workflow import GOOD_METRICS, approach_of

ROOT = Path(__file__).resolve().parents[2]
CI = "CiPrincipal"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/data-key"
STACK = "Finetune"


def _policy(state_machine_arn: str) -> list[dict[str, Any]]:
    """The first JSON block of docs/ci.md with the emulated account's names."""
    text = (ROOT / "docs" / "ci.md").read_text()
    block = re.search(r"```json\n(.*?)```", text, re.DOTALL)
    assert block is not None
    values = {
        "<REGION>": REGION,
        "<ACCOUNT_ID>": ACCOUNT_ID,
        "<STACK_NAME>": STACK,
        "<STATE_MACHINE_NAME>": state_machine_arn.rsplit(":", 1)[-1],
        "<BUCKET_NAME>": DATA_BUCKET,
        "<LEDGER_TABLE_NAME>": TABLE_NAME,
        "<KEY_ID>": KEY.rsplit("/", 1)[-1],
        "<JOB_NAME_PREFIX>": deployment_config().job_name_prefix,
    }
    policy = block[1]
    for placeholder, value in values.items():
        policy = policy.replace(placeholder, value)
    assert "<" not in policy, policy
    return json.loads(policy)["Statement"]


def _kms(action: str, reason: str) -> Iterator[iam_gate.Need]:
    # The bucket and the ledger are encrypted with the stack's key: reading them decrypts through the service.
    via = {"s3:GetObject": "s3", "dynamodb:Query": "dynamodb"}.get(action)
    if via:
        yield iam_gate.Need(CI, "kms:Decrypt", KEY, reason, (("kms:ViaService", f"{via}.{REGION}.amazonaws.com"),))


def _resource(call: AwsCall, action: str) -> str:
    if not iam_gate._has_resource_types(action):
        return "*"
    p = call.params
    arns = {
        ("stepfunctions", "StartExecution"): lambda: p["stateMachineArn"],
        ("stepfunctions", "DescribeExecution"): lambda: p["executionArn"],
        ("stepfunctions", "StopExecution"): lambda: p["executionArn"],
        ("dynamodb", "Query"): lambda: f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{p['TableName']}",
        ("s3", "GetObject"): lambda: f"arn:aws:s3:::{p['Bucket']}/{p['Key']}",
        ("sagemaker", "DescribeTrainingJob"): lambda: (
            f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:training-job/{p['TrainingJobName']}".lower()
        ),
        ("logs", "DescribeLogStreams"): lambda: f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{p['logGroupName']}:*",
        ("logs", "GetLogEvents"): lambda: (
            f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{p['logGroupName']}:log-stream:{p['logStreamName']}"
        ),
    }
    return arns[(call.service, call.operation)]()


def _needs(calls: list[AwsCall]) -> list[iam_gate.Need]:
    needs: dict[iam_gate.Need, None] = {}
    for call in calls:
        action = f"{call.iam_prefix}:{call.operation}"
        reason = f"the CLI called {call.service}.{call.operation}"
        needs.setdefault(iam_gate.Need(CI, action, _resource(call, action), reason))
        for need in _kms(action, reason):
            needs.setdefault(need)
    return list(needs)


@pytest.fixture
def cli_calls(account_with) -> tuple[str, list[AwsCall]]:
    """The calls of `start --wait`, `report`, `compare`, `logs`, `quotas`, `watch` and `stop` against the emulated
    account (the state machine's ARN, the calls)."""
    account = account_with(
        lambda request: ScriptedOutcome(
            metrics=GOOD_METRICS, polls_in_progress=1 if approach_of(request) == "qlora" else 10_000
        )
    )
    answer_quota_requests(account, [])
    with attributed_to(CI):
        started = finetune(account, "start", "--model", "mistral-7b", "--approach", "qlora", "--name", "ci-a", "--wait")
        assert started.exit_code == 0, started.output
    [job] = account.services.create_calls
    logs = boto3.client("logs", region_name=REGION)  # SageMaker writes the job's log stream (not the CI principal)
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=f"{job}/algo-1-1")
    logs.put_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs",
        logStreamName=f"{job}/algo-1-1",
        logEvents=[{"timestamp": int(time.time() * 1000), "message": "step 1"}],
    )
    with attributed_to(CI):
        for args in (
            ("report", "ci-a", "--format", "json"),
            ("compare", "ci-a", "ci-a"),
            ("logs", job),
            ("quotas", "--matrix", "study"),
            ("start", "--model", "mistral-7b", "--approach", "lora", "--name", "ci-b"),
        ):
            result = finetune(account, *args)
            assert result.exit_code == 0, (args, result.output)
        deadline = time.monotonic() + 60
        while len(account.services.create_calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        stopped = finetune(account, "stop", "ci-b")
        assert stopped.exit_code == 0, stopped.output
    account.wait(next(e for e in _executions(account) if e["name"] == "ci-b")["executionArn"])
    return account.state_machine_arn, [call for call in account.calls.calls if call.function == CI]


def _executions(account) -> list[dict]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    return sfn.list_executions(stateMachineArn=account.state_machine_arn)["executions"]


def test_the_policy_allows_every_call_the_clis_ci_commands_make(cli_calls) -> None:
    state_machine_arn, calls = cli_calls
    statements = _policy(state_machine_arn)

    needs = _needs(calls)

    operations = {call.operation for call in calls}
    assert {
        "StartExecution",
        "DescribeExecution",
        "StopExecution",
        "Search",
        "Query",
        "GetObject",
        "DescribeTrainingJob",
        "DescribeLogStreams",
        "GetLogEvents",
        "ListServiceQuotas",
        "ListRequestedServiceQuotaChangeHistory",
    } <= operations
    assert [str(need) for need in needs if not iam_gate.allows(statements, need)] == []

    # And the evaluator is not vacuous: without the reports statement, reading the report is denied
    without_reports = [s for s in statements if s.get("Sid") != "ReadReports"]
    denied = [need for need in needs if not iam_gate.allows(without_reports, need)]
    assert denied and all(need.action == "s3:GetObject" for need in denied)


# The AWS CLI commands the recipe runs, as IAM actions on the resource each names.
_RECIPE_COMMANDS = {
    ("cloudformation", "describe-stacks"): (
        "cloudformation:DescribeStacks",
        f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK}/0a1b2c3d-0000-0000-0000-000000000000",
    ),
    ("stepfunctions", "start-execution"): ("states:StartExecution", "{machine}"),
    ("stepfunctions", "describe-execution"): ("states:DescribeExecution", "{execution}"),
    ("stepfunctions", "stop-execution"): ("states:StopExecution", "{execution}"),
    ("s3", "cp"): ("s3:GetObject", f"arn:aws:s3:::{DATA_BUCKET}/reports/ci-4242-1/report.json"),
}


def test_the_policy_allows_every_aws_cli_command_of_the_recipe() -> None:
    machine = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:Workflow"
    execution = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:execution:Workflow:ci-4242-1"
    statements = _policy(machine)
    sources = (ROOT / "examples" / "ci" / "run-study.sh").read_text() + (
        ROOT / "examples" / "ci" / "github-actions.yml"
    ).read_text()
    commands = set(re.findall(r"\baws ([a-z0-9-]+) ([a-z0-9-]+)", sources))
    commands -= {("service-quotas", "request-service-quota-increase")}  # printed for a human, not run

    assert commands == set(_RECIPE_COMMANDS), "teach _RECIPE_COMMANDS the recipe's new AWS CLI command"
    for action, resource in _RECIPE_COMMANDS.values():
        need = iam_gate.Need(CI, action, resource.format(machine=machine, execution=execution), "the recipe")
        assert iam_gate.allows(statements, need), need
        for kms_need in _kms(action, "the recipe"):
            assert iam_gate.allows(statements, kms_need), kms_need


def test_parliament_finds_nothing_in_the_policy() -> None:
    statements = _policy(f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:Workflow")

    findings = iam_gate.parliament.analyze_policy_string(json.dumps({"Version": "2012-10-17", "Statement": statements}))

    # parliament 1.6.4's copy of the IAM reference lists only the Express form (`express:...`) for DescribeExecution;
    # the Service Authorization Reference authorizes it on a standard `execution:` ARN too, which is what ours are.
    express_only = {"action": "states:DescribeExecution", "required_format": "arn:*:states:*:*:express:*:*:*"}
    assert [(f.issue, f.detail) for f in findings.findings] == [("RESOURCE_MISMATCH", [express_only])]
