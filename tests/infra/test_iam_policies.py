"""What the synthesized policies allow, evaluated like IAM does (tests/support/iam_gate.py), for the grants that moto
cannot check and a real account refuses or over-allows; and parliament's lint of every policy of both stacks."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from finetune.local.cfn import Resolver
from finetune.local.runner import ACCOUNT_ID, REGION
from lambdas.ledger import CALIBRATION_INDEX, MODEL_APPROACH_INDEX
from stacks.app_builder import cdk_json_context
from stacks.config import CONTEXT_KEY, load_config
from stacks.packaging import REPO_ROOT
from tests.support.iam_gate import TRAINING_LOG_GROUP, Gate, Need, lint_policies

LOGS = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{TRAINING_LOG_GROUP}"
TRAINING_JOBS = f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:training-job"
# This deployment's job-name prefix (resource prefix + a hash of the stack), as the synthesized policies use it.
PREFIX = load_config(cdk_json_context()[CONTEXT_KEY]).job_name_prefix


@pytest.fixture(scope="module")
def gate(synthesized) -> Gate:
    return Gate(synthesized.main_json, Resolver(account_id=ACCOUNT_ID, region=REGION))


def _allowed(gate: Gate, principal: str, action: str, resource: str, **context: str) -> bool:
    role = next(role for role, name in gate.principal_names().items() if name == principal)
    return not gate.denied([Need(role, action, resource, "test", tuple(sorted(context.items())))])


def _ref(gate: Gate, resource_type: str, attribute: str | None = None) -> str:
    """The local ARN (or name) of the template's only resource of this type."""
    [logical_id] = [k for k, v in gate.template["Resources"].items() if v["Type"] == resource_type]
    return gate.resolver.resolve({"Fn::GetAtt": [logical_id, attribute]} if attribute else {"Ref": logical_id})


def test_state_machine_may_use_the_topics_key_so_sns_accepts_its_notification(gate) -> None:
    # SNS refuses a publisher that cannot use the topic's key: the execution would fail at Notify.
    needs = [need for need in gate.service_side_needs() if need.action.startswith("kms:")]

    assert {need.action for need in needs} == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert {need.resource for need in needs} == {_ref(gate, "AWS::KMS::Key", "Arn")}
    assert not gate.denied(needs)


def test_training_jobs_may_create_and_describe_their_log_group_in_the_form_logs_authorizes(gate) -> None:
    # Log-group actions are authorized against `log-group:NAME:*`; the bare group ARN matches none of them.
    for action in ("logs:CreateLogGroup", "logs:DescribeLogStreams"):
        assert _allowed(gate, "TrainingJob", action, f"{LOGS}:*")
    assert _allowed(gate, "TrainingJob", "logs:PutLogEvents", f"{LOGS}:log-stream:{PREFIX}-run-job/algo-1-1")
    assert not _allowed(gate, "TrainingJob", "logs:PutLogEvents", f"{LOGS}:log-stream:other-project-job/algo-1")
    assert not _allowed(gate, "TrainingJob", "logs:PutLogEvents", f"{LOGS}-other:log-stream:finetune-job/algo-1")


def test_plan_may_describe_the_token_secret_but_neither_read_it_nor_list_default_quotas(gate) -> None:
    secret = _ref(gate, "AWS::SecretsManager::Secret")

    assert _allowed(gate, "Plan", "secretsmanager:DescribeSecret", secret)
    assert not _allowed(gate, "Plan", "secretsmanager:GetSecretValue", secret)
    assert not _allowed(gate, "Plan", "secretsmanager:DescribeSecret", f"{secret[:-6]}other")
    # Plan never calls it (lambdas/plan.py lists the applied quotas only).
    assert not _allowed(gate, "Plan", "servicequotas:ListAWSDefaultServiceQuotas", "*")


def test_report_may_query_the_model_approach_index_and_only_report_may(gate) -> None:
    table = _ref(gate, "AWS::DynamoDB::Table", "Arn")
    index = f"{table}/index/{MODEL_APPROACH_INDEX}"
    assert _allowed(gate, "Report", "dynamodb:Query", index)
    assert not _allowed(gate, "Report", "dynamodb:Scan", index)
    assert not _allowed(gate, "Report", "dynamodb:Query", f"{table}/index/other")
    assert not _allowed(gate, "Record", "dynamodb:Query", index)


def test_plan_may_query_the_calibration_index_only(gate) -> None:
    table = _ref(gate, "AWS::DynamoDB::Table", "Arn")
    assert _allowed(gate, "Plan", "dynamodb:Query", f"{table}/index/{CALIBRATION_INDEX}")
    assert not _allowed(gate, "Plan", "dynamodb:Query", table)
    assert not _allowed(gate, "Plan", "dynamodb:Query", f"{table}/index/{MODEL_APPROACH_INDEX}")
    assert not _allowed(gate, "Plan", "dynamodb:PutItem", table)


def test_training_jobs_read_the_token_value_only(gate) -> None:
    secret = _ref(gate, "AWS::SecretsManager::Secret")

    assert _allowed(gate, "TrainingJob", "secretsmanager:GetSecretValue", secret)
    assert not _allowed(gate, "TrainingJob", "secretsmanager:DescribeSecret", secret)


def test_launch_may_tag_a_training_job_only_while_creating_it(gate) -> None:
    job = f"{TRAINING_JOBS}/{PREFIX}-run-mistral-7b-lora"

    assert _allowed(gate, "Launch", "sagemaker:AddTags", job, **{"sagemaker:TaggingAction": "CreateTrainingJob"})
    assert not _allowed(gate, "Launch", "sagemaker:AddTags", job)


def test_training_job_grants_cover_this_deployments_job_name_prefix_only(gate) -> None:
    for principal, action in (("Launch", "sagemaker:CreateTrainingJob"), ("Status", "sagemaker:DescribeTrainingJob")):
        assert _allowed(gate, principal, action, f"{TRAINING_JOBS}/{PREFIX}-run-mistral-7b-lora")
        assert not _allowed(gate, principal, action, f"{TRAINING_JOBS}/another-project-run")


def test_every_key_lets_iam_policies_grant_its_use(gate) -> None:
    # Otherwise identity grants on the key would do nothing, and the gate, which reads them, would pass wrongly.
    assert gate.keys_not_delegating_to_iam() == []


def _acknowledged(finding: Any, acknowledgement: dict[str, str]) -> bool:
    return (
        finding.resource_type == acknowledgement["resource_type"]
        and finding.issue == acknowledgement["issue"]
        and acknowledgement["detail_contains"] in finding.detail
    )


def test_every_policy_passes_parliament_except_the_acknowledged_false_positives(synthesized) -> None:
    acknowledgements = tomllib.loads((REPO_ROOT / "lint-skips.toml").read_text())["parliament"]
    resolver = Resolver(account_id=ACCOUNT_ID, region=REGION)
    findings = [
        finding
        for template in (synthesized.main_json, synthesized.quotas.to_json())
        for finding in lint_policies(template, resolver)
    ]

    unacknowledged = [f for f in findings if not any(_acknowledged(f, a) for a in acknowledgements)]
    unused = [a for a in acknowledgements if not any(_acknowledged(f, a) for f in findings)]
    assert unacknowledged == []
    assert unused == []
