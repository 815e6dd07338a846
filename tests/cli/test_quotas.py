"""`finetune quotas` and a quota-bound `start`: applied values, open increase requests, and the exact request
command for each short quota (codes looked up by name in the emulated Service Quotas)."""

from __future__ import annotations

import boto3

from finetune.local.backends import ScriptedOutcome
from finetune.local.runner import REGION
from tests.support.cli import answer_quota_requests, finetune
from tests.support.workflow import GOOD_METRICS


def _codes() -> dict[str, str]:
    quotas = boto3.client("service-quotas", region_name=REGION).list_service_quotas(ServiceCode="sagemaker")
    return {quota["QuotaName"]: quota["QuotaCode"] for quota in quotas["Quotas"]}


def _command(code: str, value: int) -> str:
    return (
        "aws service-quotas request-service-quota-increase --service-code sagemaker "
        f"--quota-code {code} --desired-value {value} --region {REGION}"
    )


def test_quotas_show_open_requests_and_the_command_for_each_short_quota(account_with) -> None:
    # Given an account with 1 instance of each type, the study needing 2 or 3 of some at once, and one request open
    account = account_with(lambda _request: ScriptedOutcome(metrics=GOOD_METRICS))
    account.services.quota_value = 1.0
    codes = _codes()
    xlarge = codes["ml.g6.xlarge for spot training job usage"]
    answer_quota_requests(
        account,
        [
            {"Id": "r-1", "QuotaCode": xlarge, "ServiceCode": "sagemaker", "DesiredValue": 3.0, "Status": "PENDING"},
            {"Id": "r-0", "QuotaCode": xlarge, "ServiceCode": "sagemaker", "DesiredValue": 9.0, "Status": "DENIED"},
        ],
    )

    # When the user checks the study's quotas
    result = finetune(account, "quotas", "--matrix", "study")

    # Then it exits 1; the open request shows, and only quotas without one get a request command
    assert result.exit_code == 1, result.output
    [xlarge_line] = [line for line in result.stdout.splitlines() if "ml.g6.xlarge for spot" in line]
    assert "3 PENDING" in xlarge_line and "DENIED" not in xlarge_line and xlarge in xlarge_line
    assert _command(codes["ml.g6.2xlarge for spot training job usage"], 2) in result.stdout
    assert _command(codes["ml.g6e.xlarge for spot training job usage"], 2) in result.stdout
    assert f"--quota-code {xlarge} " not in result.stdout
    assert "ml.g6e.2xlarge for spot training job usage" in result.stdout  # needs 1: enough, no command
    assert _command(codes["ml.g6e.2xlarge for spot training job usage"], 1) not in result.stdout


def test_unreadable_request_history_still_shows_the_quotas(account_with) -> None:
    # moto raises for ListRequestedServiceQuotaChangeHistory; real AWS may deny it: either way "unknown"
    account = account_with(lambda _request: ScriptedOutcome(metrics=GOOD_METRICS))
    account.services._operations[("service-quotas", "ListRequestedServiceQuotaChangeHistory")] = _denied

    result = finetune(account, "quotas", "--matrix", "study")

    assert result.exit_code == 0, result.output
    assert "unknown" in result.stdout and "cannot read open quota requests" in result.stderr


def _denied(_params: dict) -> dict:
    from finetune.local.services import ServiceError

    raise ServiceError("AccessDeniedException", "not allowed")


def test_a_start_that_plan_refuses_for_quota_prints_the_request_command(account_with) -> None:
    # Given an account whose SageMaker quotas are all 0
    account = account_with(lambda _request: ScriptedOutcome(metrics=GOOD_METRICS))
    account.services.quota_value = 0.0

    # When a user starts one QLoRA job and waits
    result = finetune(account, "start", "--model", "mistral-7b", "--approach", "qlora", "--name", "q0", "--wait")

    # Then Plan's QuotaExceeded is shown with the exact command for the quota it named
    assert result.exit_code == 1
    assert "QuotaExceeded" in result.stderr
    [name] = [n for n in _codes() if f"quota '{n}' is 0 instances" in result.stderr]
    assert _command(_codes()[name], 1) in result.stderr


def test_shortfalls_are_read_from_plans_refusal_and_from_sagemakers_launch_error() -> None:
    from finetune.quota_requests import shortfalls_in

    plan = "SageMaker quota too low: ml.g5.xlarge: quota 'ml.g5.xlarge for spot training job usage' is 1 instances "
    plan += "but this run needs 2 at once. Request an increase"
    launch = (
        "ResourceLimitExceeded: The account-level service limit 'ml.g5.12xlarge for training job usage' is 0 "
        "Instances, with current utilization of 0 Instances and a request delta of 1 Instances."
    )

    assert shortfalls_in(plan + "\n" + launch) == {
        "ml.g5.xlarge for spot training job usage": 2,
        "ml.g5.12xlarge for training job usage": 1,
    }
    assert shortfalls_in("AlgorithmError: ExecuteUserScriptError") == {}
